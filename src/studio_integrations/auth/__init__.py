"""Token verification, the Principal, scope names and the Strawberry permission guards."""
