"""The local demo: a simulated inference fleet for a real Prometheus to scrape."""
