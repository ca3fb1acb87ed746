"""td3rec.models"""
