"""td3rec.training"""
