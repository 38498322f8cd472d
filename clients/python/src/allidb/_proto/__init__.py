"""Stubs generated from api/proto/allidb.proto by scripts/generate_stubs.py; do not edit."""
