"""The Flask edge: HTTP ⇄ pipeline calls (app factory + Blueprint, auth, CORS, body limit)."""
