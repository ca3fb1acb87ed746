"""td3rec.distill"""
