"""HTTP adapter of the notifier context (paths of API.md)."""

from fastapi import APIRouter

router = APIRouter()
