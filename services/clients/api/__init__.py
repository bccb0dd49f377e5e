"""HTTP adapter of the clients context (paths of API.md)."""

from fastapi import APIRouter

router = APIRouter()
