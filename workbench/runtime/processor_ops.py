"""(being written) operators registered in OPERATOR_FACTORIES."""

from __future__ import annotations
