"""Real-browser tests of the staff web admin (Playwright driving Debian's Chromium)."""
