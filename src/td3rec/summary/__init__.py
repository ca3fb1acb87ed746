"""td3rec.summary"""
