"""govern.rotation"""
