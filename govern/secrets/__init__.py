"""govern.secrets"""
