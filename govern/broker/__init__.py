"""govern.broker"""
