"""HTTP only: controllers, error mapping and the merchant guard. Nothing imports this package."""
