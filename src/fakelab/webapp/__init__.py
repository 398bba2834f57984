"""The local web app: `fakelab serve` (see docs/webapp.md)."""
