"""The /v2/ registry protocol views, one module per resource."""
