"""End-to-end tests of the web dashboard in a real headless Chromium."""
