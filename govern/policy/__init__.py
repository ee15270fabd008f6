"""govern.policy"""
