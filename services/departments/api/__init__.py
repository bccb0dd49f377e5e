"""HTTP adapter of the departments context (paths of API.md)."""

from fastapi import APIRouter

router = APIRouter()
