"""A request the OpenAI-compatible route must refuse before the model sees it.

Shared by the tests of ``/v1/chat/completions`` parameters and tool fields: the same check,
the official SDK's error for a 400 naming the field, and an upstream that received nothing.
"""

from __future__ import annotations

from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletion

from upstream.control import Upstream


def refused_naming(
    sdk: openai.OpenAI, upstream: Upstream, body: dict[str, Any], param: str
) -> openai.BadRequestError:
    """Send ``body``: a 400 ``invalid_request_error`` whose ``param`` is ``param``, and no
    request upstream. The error is returned for the checks a caller adds."""
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.post("/chat/completions", body=body, cast_to=ChatCompletion)
    assert caught.value.status_code == 400
    assert caught.value.type == "invalid_request_error"
    assert caught.value.param == param
    assert upstream.requests() == []
    return caught.value
