"""td3rec.data"""
