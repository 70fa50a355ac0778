"""The users service: a FastAPI app built only from `building_blocks`."""
