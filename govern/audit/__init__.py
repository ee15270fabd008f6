"""govern.audit"""
