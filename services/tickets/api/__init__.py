"""HTTP adapter of the tickets context (paths of API.md)."""

from fastapi import APIRouter

router = APIRouter()
