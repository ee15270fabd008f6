"""govern.admin"""
