"""What stands on the mirror: kept versions, verification, restore, run status."""
