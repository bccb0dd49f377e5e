"""HTTP adapter of the identity context (paths of API.md)."""

from fastapi import APIRouter

router = APIRouter()
