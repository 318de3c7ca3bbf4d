"""xt_browser - headless Chromium for the tests of the web pages (t1860
web admin, t1870 web chat): a selenium driver of Debian's chromium and
chromium-driver, a poll of the DOM, the browser's console log, a
screenshot for a person to look at, and a plain HTTP GET."""

import http.client
import os
import time

import xmppdtest as xt

CHROMEDRIVER = '/usr/bin/chromedriver'
SHOTS = xt.TOP_BUILDDIR / 't' / 'screenshots'


def have_driver():
    """True when chromium-driver is installed."""
    return os.access(CHROMEDRIVER, os.X_OK)


def browser():
    """A headless Chromium, 1280x900, that keeps its console log."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    o = webdriver.ChromeOptions()
    for a in ('--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage',
              '--window-size=1280,900'):
        o.add_argument(a)
    o.set_capability('goog:loggingPrefs', {'browser': 'ALL'})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=o)


def wait_for(drv, fn, timeout=10):
    """Polls fn(drv) in the caller's thread until it is true; its value, or
    None after timeout seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            v = fn(drv)
            if v:
                return v
        except Exception:  # noqa: BLE001 - the DOM is being redrawn
            pass
        time.sleep(0.1)
    return None


def browser_log(drv):
    """The console messages the page logged, or [] if they cannot be read."""
    try:
        return [e['message'] for e in drv.get_log('browser')]
    except Exception:  # noqa: BLE001
        return []


def screenshot(drv, name):
    """Saves the page as t/screenshots/NAME.png in the build directory and
    says where in the test output."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    shot = SHOTS / ('%s.png' % name)
    drv.save_screenshot(str(shot))
    xt.note('screenshot: %s' % shot)
    return shot


def get(ip, port, path, method='GET', headers=None):
    """(status, headers with lowercased names, body bytes) of one request."""
    c = http.client.HTTPConnection(ip, port, timeout=10)
    try:
        c.request(method, path, headers=headers or {})
        r = c.getresponse()
        body = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, body
    finally:
        c.close()
