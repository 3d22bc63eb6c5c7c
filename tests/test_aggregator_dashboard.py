"""The dashboard in a real headless Chromium (Debian's chromium + chromedriver, driven by
selenium): served by the aggregator (SQLite, HTTP on loopback, as the demo runs it) while a
device publishes through a real mosquitto with the edge's own publisher: status, telemetry,
counts, heatmap tiles and a snapshot of a generated scene. The page shows the device online,
its counts, and a non-empty heatmap image; sized like a phone.

`VA_DASHBOARD_SCREENSHOT=PATH` also saves the screenshot there (the committed one is
benchmarks/results/aggregator-dashboard.png).
"""

import os
import shutil
import time
from pathlib import Path

import cv2
import pytest

from aggregator.server import local_server
from edge.delivery.publisher import Publisher
from edge.delivery.spool import Spool
from edge.devkit.synthetic import render, standard_scenes
from tests.mqtt_fixtures import counts_body, heatmap_body, make_config, wait_for

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


@pytest.fixture
def browser():
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.skip("Debian's chromium and chromium-driver are not installed")
    webdriver = pytest.importorskip("selenium.webdriver")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=412,1400"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    yield driver
    driver.quit()


@pytest.mark.slow
def test_dashboard_shows_the_device_online_its_counts_and_heatmap(tmp_path: Path, mosquitto_broker, browser):
    from selenium.webdriver.common.by import By

    scene = standard_scenes()[0]
    ok, jpeg = cv2.imencode(".jpg", render(scene, 30))
    assert ok
    # Snapshots are off by default (privacy): this site turns them on for the heatmap overlay.
    config = make_config(
        tmp_path,
        mosquitto_broker.port,
        device_id="lobby-pi",
        cameras=[{"id": "door-cam", "source": "x.mp4"}],
        snapshot={"enabled": True},
    )
    with local_server(mosquitto_broker.port, tmp_path / "aggregator.sqlite") as server:
        publisher = Publisher(config, Spool.from_config(config), "boot-1")
        publisher.start()
        wait_for(lambda: publisher.stats().connected)
        now = time.time()
        for i in range(12):
            start = now - 120 + 10 * i
            body = counts_body(frames=100, people=1 + i % 3)
            body["lines"]["door"] = {"in": i % 4, "out": i % 3}
            publisher.submit("counts", "door-cam", (start, start + 10), body)
        for i, tile in enumerate([(0, 0), (1, 0), (1, 1), (2, 1), (3, 2)]):
            publisher.submit("heatmap", "door-cam", (now - 60, now), heatmap_body(tile=tile, seed=i))
        publisher.publish_snapshot("door-cam", jpeg.tobytes())
        publisher.publish_telemetry({"tier": "ssdlite int8 300", "effective_fps": 9.7, "target_fps": 10.0})
        assert publisher.wait_drained(20)
        wait_for(lambda: server.store.snapshot("lobby-pi", "door-cam") is not None)

        browser.get(server.http.url + "/")
        wait_for(lambda: "updated" in browser.find_element(By.ID, "status").text, 30)
        wait_for(
            lambda: browser.execute_script(
                "const i = document.querySelector('.camera img'); return i && i.complete && i.naturalWidth;"
            ),
            30,
        )
        row = browser.find_element(By.CSS_SELECTOR, "#fleet tbody tr").text
        assert "lobby-pi" in row and "online" in row and "ssdlite int8 300" in row
        totals = browser.find_element(By.CSS_SELECTOR, ".camera .totals").text
        assert "door: in 18, out 12" in totals and "queue: entered 36" in totals
        assert browser.find_elements(By.CSS_SELECTOR, ".camera svg rect")
        width = browser.execute_script("return document.querySelector('.camera img').naturalWidth")
        assert width >= 400
        # The heatmap image has colour in it, not just the background: count hot pixels.
        hot = browser.execute_script(
            """const img = document.querySelector('.camera img');
               const c = document.createElement('canvas'); c.width = img.naturalWidth; c.height = img.naturalHeight;
               const g = c.getContext('2d'); g.drawImage(img, 0, 0);
               const d = g.getImageData(0, 0, c.width, c.height).data; let n = 0;
               for (let i = 0; i < d.length; i += 4) if (d[i] > 200 && d[i + 2] < 120) n++;
               return n;"""
        )
        assert hot > 100
        shot = tmp_path / "dashboard.png"
        browser.save_screenshot(str(shot))
        assert shot.stat().st_size > 20_000
        if os.environ.get("VA_DASHBOARD_SCREENSHOT"):
            shutil.copy(shot, os.environ["VA_DASHBOARD_SCREENSHOT"])
        publisher.stop()
