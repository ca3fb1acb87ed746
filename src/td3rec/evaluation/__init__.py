"""td3rec.evaluation"""
