"""The web page (server/web/) in a real headless Chromium, against a real
primaps-server: load it, upload a demo photo, wait for the overlay, check
its size and the mask list, look at the status tab. The screenshots go to
$PRIMAPS_ARTIFACT_DIR (build/artifacts)."""
import os
import shutil
import sys

import pytest
from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as conditions
from selenium.webdriver.support.ui import Select, WebDriverWait

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "python", "tests"))
from conftest import DEMO_DIR, ServerProcess  # noqa: E402

ARTIFACTS = os.environ.get("PRIMAPS_ARTIFACT_DIR", "artifacts")


@pytest.fixture(scope="module")
def server():
    s = ServerProcess("--cpu_threads=2")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1400,1000"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def screenshot(browser, name):
    os.makedirs(ARTIFACTS, exist_ok=True)
    path = os.path.join(ARTIFACTS, name)
    browser.save_screenshot(path)
    return path


def test_upload_a_photo_and_see_overlay_and_masks(server, browser):
    photo = os.path.abspath(os.path.join(DEMO_DIR, "cityscapes_example.png"))
    width, height = Image.open(photo).size
    browser.get(f"http://127.0.0.1:{server.http_port}/")
    assert browser.title == "PriMaPs Serve"
    Select(browser.find_element(By.ID, "method")).select_by_value("propose")
    browser.find_element(By.ID, "file").send_keys(photo)
    browser.find_element(By.ID, "run").click()
    overlay = WebDriverWait(browser, 120).until(
        conditions.presence_of_element_located((By.CSS_SELECTOR, "#overlay[data-ready]")))
    # The overlay has the image's own size (output_size=original).
    assert int(overlay.get_attribute("width")) == width
    assert int(overlay.get_attribute("height")) == height
    items = browser.find_elements(By.CSS_SELECTOR, "#mask-list li")
    assert len(items) >= 2
    assert items[0].find_element(By.CLASS_NAME, "area").text.endswith("%)")
    summary = browser.find_element(By.ID, "summary").text
    assert "head version 0" in summary and "ms in the server" in summary
    assert not browser.find_element(By.ID, "error").is_displayed()
    # The overlay is the image blended with colours, not blank.
    drawn = browser.execute_script(
        "const c = document.getElementById('overlay');"
        "const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        "let s = 0; for (let i = 0; i < d.length; i += 4000) s += d[i] + d[i + 1] + d[i + 2];"
        "return s;")
    assert drawn > 0
    print("screenshot:", screenshot(browser, "web_page.png"))


def test_a_bad_image_shows_the_servers_error(server, browser, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    browser.get(f"http://127.0.0.1:{server.http_port}/")
    browser.find_element(By.ID, "file").send_keys(str(bad))
    browser.find_element(By.ID, "run").click()
    error = WebDriverWait(browser, 60).until(
        conditions.visibility_of_element_located((By.ID, "error")))
    assert "400 INVALID_ARGUMENT" in error.text
    assert "unsupported image format" in error.text


def test_status_tab_shows_the_model_and_counts_requests(server, browser):
    browser.get(f"http://127.0.0.1:{server.http_port}/")
    browser.find_element(By.ID, "tab-status").click()
    WebDriverWait(browser, 30).until(
        lambda b: b.find_element(By.ID, "st-backbone").text == "builtin")
    assert browser.find_element(By.ID, "st-ready").text == "yes"
    assert browser.find_element(By.ID, "st-version").text == "0"
    assert browser.find_element(By.ID, "st-precision").text == "fp32"
    # The earlier tests' requests are counted, and the throughput is a rate.
    WebDriverWait(browser, 30).until(
        lambda b: b.find_element(By.ID, "st-throughput").text.endswith("requests/s"))
    assert int(browser.find_element(By.ID, "st-requests").text) >= 2
    screenshot(browser, "web_page_status.png")
