"""The HTTP API around the serving function: it only reads Redis, no model is loaded."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import FastAPI, HTTPException, Path, Query
from pydantic import BaseModel, Field

from serving.handler import (
    InvalidRequestError,
    NoLiveVersionError,
    RecommendationService,
    ServingUnavailableError,
)


class RecommendationsOut(BaseModel):
    """A reader's books, best first, with the version and path that produced them."""

    user_id: int
    items: list[int] = Field(examples=[[2, 18, 27, 4, 1]])
    source: Literal["personalised", "popular-fallback", "degraded"]
    alias: str
    version: str


class SimilarOut(BaseModel):
    """Books that readers of `book_id` also liked."""

    book_id: int
    items: list[int] = Field(examples=[[3, 5, 17]])
    source: Literal["similar", "popular-fallback", "degraded"]
    alias: str
    version: str


def create_app(service: RecommendationService | None = None) -> FastAPI:
    """Build the app; without a service, the process's default one (from settings) is used."""
    app = FastAPI(
        title="GoodBooks Recommender",
        description="Precomputed book recommendations read from Redis.",
        version="0.1.0",
    )

    def current() -> RecommendationService:
        if service is not None:
            return service
        import serving

        return serving.default_service()

    def answer(call):  # type: ignore[no-untyped-def]
        try:
            return call()
        except InvalidRequestError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from None
        except (NoLiveVersionError, ServingUnavailableError) as exc:
            raise HTTPException(status_code=503, detail=str(exc)) from None

    @app.get("/recommendations/{user_id}", response_model=RecommendationsOut)
    def recommendations(
        user_id: Annotated[int, Path(ge=1, description="Reader id.")],
        k: Annotated[int, Query(ge=1, le=1000, description="How many books.")] = 10,
    ) -> RecommendationsOut:
        result = answer(lambda: current().recommend(user_id, k))
        return RecommendationsOut(**result.__dict__)

    @app.get("/books/{book_id}/similar", response_model=SimilarOut)
    def similar(
        book_id: Annotated[int, Path(ge=1, description="Book id.")],
        k: Annotated[int, Query(ge=1, le=1000, description="How many books.")] = 10,
    ) -> SimilarOut:
        result = answer(lambda: current().similar(book_id, k))
        return SimilarOut(**result.__dict__)

    @app.get("/health")
    def health() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    return app
