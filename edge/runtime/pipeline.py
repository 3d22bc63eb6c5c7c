"""Wiring per camera: sources → inference lanes (batching across cameras) → per-camera
analysis → window outputs.

One model instance serves every camera. Each of its lanes (`Detector.lanes`: one per physical
core on a CPU, one on a GPU) is a worker thread that takes the newest due frame of each camera,
batches up to the engine's batch size, times each stage and runs the inference; the lanes'
calls run at once on one model (edge.detection.engines.onnxruntime). An analysis thread runs
each camera's analyser (tracking and analytics) on the detections in the order the frames were
taken, whichever lane finishes first, while the lanes already run the next inferences. Which
frames are due follows the active tier: one analysed frame per `frame_skip / target_fps`
seconds of source time, so the analysed frames cover the camera's target rate. Tier switches
swap the detector between batches; analysers (tracker state, open windows) are kept.

Threads and the state they own: taking frames is one lane at a time (the camera order, a
rotation index over a tuple nobody mutates, and each camera's pacing), and each take gets a
ticket: jobs reach the analysis thread in ticket order (`_InOrder`). The per-camera
counters (processed, skipped, recent processing times) are guarded by one lock, so `stats()`
reads a consistent snapshot from any thread (the analysis and telemetry threads, the main
loop). The analysis thread gets everything it needs in its job, including the counts body's
fps/tier/drops.
"""

import logging
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Deque, Dict, List, Optional, Protocol, Sequence, Tuple

import numpy as np

from edge.config import CameraConfig
from edge.detection.engines.base import Detections, Detector
from edge.detection.pictures import Image
from edge.runtime.sources import Frame, FrameSource

log = logging.getLogger(__name__)

STAGES = ("decode", "preprocess", "inference", "postprocess", "analysis")
DETECTION_STAGES = ("preprocess", "inference", "postprocess")  # a lane's share of a frame
# Not stages: from the reader starting to read (decode) a frame, and from the decoded frame being
# handed over, to its counts being updated.
LATENCY = "read_to_counts"
DECODED_LATENCY = "decoded_to_counts"
# While no frame is due, the lanes close the realtime cameras' due windows at most this often.
IDLE_POLL_S = 0.1


@dataclass(frozen=True)
class WindowStatus:
    """The pipeline-side fields of a counts body for a camera."""

    fps: float  # covered fps: analysed fps × frame_skip, compared with the target
    tier: str
    dropped: int


class FrameAnalyser(Protocol):
    """What the pipeline feeds per camera (tracking + analytics live behind it)."""

    def update(self, frame: Frame, detections: Detections, seconds: float) -> None: ...

    def poll(self, now: float, status: WindowStatus, final: bool = False) -> None: ...


class StageTimer:
    """Rolling per-stage durations (seconds) for telemetry and the benchmark."""

    def __init__(self, size: int = 512) -> None:
        self._size = size
        stages = (*STAGES, LATENCY, DECODED_LATENCY)
        self._samples: Dict[str, Deque[float]] = {stage: deque(maxlen=size) for stage in stages}
        self._totals: Dict[str, float] = {stage: 0.0 for stage in stages}
        self._lock = threading.Lock()

    def add(self, stage: str, seconds: float) -> None:
        with self._lock:
            self._samples[stage].append(seconds)
            self._totals[stage] += seconds

    def total_s(self, stage: str) -> float:
        """Seconds spent in a stage since the start (the controller's busy time)."""
        with self._lock:
            return self._totals[stage]

    def reset(self, size: Optional[int] = None) -> None:
        """Forget the samples (not the totals): a benchmark measures from here, keeping up to
        `size` samples per stage."""
        with self._lock:
            self._size = size or self._size
            self._samples = {stage: deque(maxlen=self._size) for stage in self._samples}

    def summary_ms(self) -> Dict[str, Dict[str, float]]:
        """mean/p50/p95/p99 (ms) and the sample count of every stage that has samples."""
        with self._lock:
            out = {}
            for stage, samples in self._samples.items():
                if samples:
                    values = np.fromiter(samples, float) * 1000.0
                    p50, p95, p99 = np.percentile(values, (50, 95, 99))
                    out[stage] = {
                        "mean": round(float(values.mean()), 3),
                        "p50": round(float(p50), 3),
                        "p95": round(float(p95), 3),
                        "p99": round(float(p99), 3),
                        "n": float(len(values)),
                    }
            return out

    def percentiles_ms(self, qs: Sequence[float] = (50, 90, 99)) -> Dict[str, Dict[str, float]]:
        with self._lock:
            out = {}
            for stage, samples in self._samples.items():
                if samples:
                    values = np.percentile(np.fromiter(samples, float), qs) * 1000.0
                    out[stage] = {f"p{int(q)}": round(float(v), 3) for q, v in zip(qs, values)}
            return out


@dataclass
class CameraRuntime:
    """One camera's state inside the pipeline; written only by the lanes (pacing while taking
    frames, counters under the pipeline's counter lock)."""

    config: CameraConfig
    source: FrameSource
    analyser: FrameAnalyser
    processed: int = 0
    skipped: int = 0  # frames read but not due under the frame-skip/target pacing
    last_timestamp: Optional[float] = None
    processed_times: Deque[float] = field(default_factory=lambda: deque(maxlen=256))

    def interval_s(self, frame_skip: int) -> float:
        """Source seconds between two analysed frames."""
        return frame_skip / self.config.target_fps

    def due(self, frame: Frame, frame_skip: int) -> bool:
        if self.last_timestamp is None:
            return True
        interval = self.interval_s(frame_skip)
        # A little slack so a source at exactly the target rate is not skipped by jitter.
        return frame.timestamp - self.last_timestamp >= interval * 0.9

    def seconds_for(self, frame: Frame, frame_skip: int) -> float:
        """Seconds of scene time this analysed frame stands for (heatmap weight)."""
        interval = frame_skip / self.config.target_fps
        if self.last_timestamp is None:
            return interval
        return float(min(max(frame.timestamp - self.last_timestamp, 0.0), 2 * interval))

    def fps(self, now: float, window_s: float) -> float:
        """Analysed frames per second over the last window (wall-clock)."""
        recent = [t for t in self.processed_times if now - t <= window_s]
        if len(recent) < 2:
            return 0.0
        span = max(now - recent[0], 1e-6)
        return len(recent) / span


@dataclass
class _AnalysisJob:
    """One frame's detections to analyse, or (without a frame) a request to close due windows."""

    camera: CameraRuntime
    now: float
    status: WindowStatus
    final: bool = False
    frame: Optional[Frame] = None
    detections: Optional[Detections] = None
    seconds: float = 0.0


@dataclass(frozen=True)
class CameraStats:
    camera_id: str
    processed: int
    skipped: int  # not due: grabbed but not converted by the source, or passed over by the worker
    dropped: int
    reconnects: int
    connected: bool
    fps: float  # analysed frames per second
    covered_fps: float  # analysed fps × frame_skip, compared with the target


@dataclass(frozen=True)
class _Taken:
    """A due frame a lane took, with the scene seconds it stands for (set when taken, in order)."""

    camera: CameraRuntime
    frame: Frame
    seconds: float


class _InOrder:
    """Hands analysis jobs on in the order their frames were taken, whichever lane finishes
    first: each take gets a ticket, and a lane that finishes early leaves its jobs here for the
    lane before it to pass on, instead of waiting for it."""

    def __init__(self, deliver: Callable[["_AnalysisJob"], None]) -> None:
        self._deliver = deliver
        self._lock = threading.Lock()
        self._issued = 0
        self._next = 0
        self._waiting: Dict[int, List[_AnalysisJob]] = {}

    def ticket(self) -> int:
        """The next number; call it where frames are taken (one lane at a time)."""
        with self._lock:
            number = self._issued
            self._issued += 1
            return number

    def done(self, ticket: int, jobs: List["_AnalysisJob"]) -> None:
        """`ticket`'s jobs (none when its detection failed), passed on with every later ticket's
        that already waits. Delivery happens under the lock, so two lanes never interleave; a
        full analysis queue holds them both (back-pressure)."""
        with self._lock:
            self._waiting[ticket] = jobs
            while self._next in self._waiting:
                for job in self._waiting.pop(self._next):
                    self._deliver(job)
                self._next += 1


@dataclass(frozen=True)
class _Settings:
    """What a tier sets in the pipeline, swapped as one between batches."""

    detector: Detector
    frame_skip: int
    tier_name: str


class Pipeline:
    def __init__(
        self,
        cameras: Sequence[Tuple[CameraConfig, FrameSource, FrameAnalyser]],
        detector: Detector,
        frame_skip: int = 1,
        clock: Callable[[], float] = time.time,
        fps_window_s: float = 5.0,
        tier_name: str = "",
        lanes: Optional[int] = None,
    ) -> None:
        # A tuple: its order never changes; taking frames rotates where it starts instead.
        self.cameras: Tuple[CameraRuntime, ...] = tuple(
            CameraRuntime(config, source, analyser) for config, source, analyser in cameras
        )
        self.timer = StageTimer()
        self._settings = _Settings(detector, frame_skip, tier_name)
        # Lane threads started; a lane beyond the active detector's `lanes` waits.
        self.lanes = max(1, lanes if lanes is not None else detector.lanes)
        self._clock = clock
        self._fps_window_s = fps_window_s
        self._lock = threading.Lock()  # guards _settings, _retired and _using
        self._counters = threading.Lock()  # guards every CameraRuntime's counters and `batches`
        self._taking = threading.Lock()  # one lane at a time takes frames (and their ticket)
        self._in_order = _InOrder(self._queue_analysis)
        self._first = 0  # the camera the next collection starts at (under _taking)
        self._ended = False  # a lane found every file source finished (under _taking)
        self._polled_at = float("-inf")  # when idle lanes last closed due windows (under _taking)
        self._stop = threading.Event()
        self._threads: List[threading.Thread] = []
        self.error: Optional[BaseException] = None
        self.batches = 0
        self._retired: List[Detector] = []
        self._using: Dict[int, Detector] = {}  # lane -> the detector its current batch runs on
        # Bounded, so analysis that falls behind slows the lanes instead of piling up frames.
        self._analysis_queue: queue.Queue[Optional[_AnalysisJob]] = queue.Queue(maxsize=16)
        self._analysis_thread: Optional[threading.Thread] = None
        # Sources set it on every new frame, so an idle lane wakes at once instead of polling.
        self._frame_ready = threading.Event()
        for camera in self.cameras:
            camera.source.frame_ready = self._frame_ready
        self._pace_sources(frame_skip)

    def _pace_sources(self, frame_skip: int) -> None:
        """Tell each source which frames are due, so it does not convert the others."""
        for camera in self.cameras:
            camera.source.pace(camera.interval_s(frame_skip))

    @property
    def frame_skip(self) -> int:
        with self._lock:
            return self._settings.frame_skip

    def apply_tier(self, detector: Detector, frame_skip: int, tier_name: str = "") -> None:
        """Swap the detector and frame-skip between batches; the old detector is closed once no
        lane runs a batch on it any more."""
        with self._lock:
            self._retired.append(self._settings.detector)
            self._settings = _Settings(detector, frame_skip, tier_name)
        self._pace_sources(frame_skip)

    def start(self) -> None:
        for camera in self.cameras:
            camera.source.start()
        self._analysis_thread = threading.Thread(target=self._run_analysis, name="analysis", daemon=True)
        self._analysis_thread.start()
        for lane in range(self.lanes):
            name = "inference" if lane == 0 else f"inference-{lane + 1}"
            thread = threading.Thread(target=self._run, args=(lane,), name=name, daemon=True)
            self._threads.append(thread)
            thread.start()

    def stop(self) -> None:
        """Stop the lanes and the sources; the analysers close their open windows (partial
        windows with their nominal bounds, so nothing counted is lost)."""
        self._stop.set()
        self._frame_ready.set()
        deadline = time.monotonic() + 10
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        if not self.running:
            self._close_windows(self._clock())
        self._finish_analysis()
        for camera in self.cameras:
            camera.source.stop()

    def join(self, timeout: Optional[float] = None) -> bool:
        """Wait until every (file) source is finished; True when the lanes ended."""
        assert self._threads, "pipeline not started"
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        if self.running:
            return False
        self._finish_analysis()
        return True

    def busy_s(self) -> float:
        """Seconds the model has been busy detecting, as the controller's capacity (frames per
        busy second) needs them: the lanes' detection seconds over the lanes that run at once,
        since two lanes busy for one second each analyse two seconds' worth of frames in it."""
        with self._lock:
            lanes = max(1, min(self.lanes, self._settings.detector.lanes))
        return sum(self.timer.total_s(stage) for stage in DETECTION_STAGES) / lanes

    @property
    def running(self) -> bool:
        return any(thread.is_alive() for thread in self._threads)

    def stats(self) -> List[CameraStats]:
        """A snapshot of every camera's counters; safe from any thread."""
        now = self._clock()
        frame_skip = self.frame_skip
        with self._counters:
            return [self._camera_stats(camera, now, frame_skip) for camera in self.cameras]

    def _camera_stats(self, camera: CameraRuntime, now: float, frame_skip: int) -> CameraStats:
        fps = camera.fps(now, self._fps_window_s)
        return CameraStats(
            camera_id=camera.config.id,
            processed=camera.processed,
            skipped=camera.skipped + camera.source.stats.frames_skipped,
            dropped=camera.source.stats.frames_dropped,
            reconnects=camera.source.stats.reconnects,
            connected=camera.source.stats.connected,
            fps=round(fps, 2),
            covered_fps=round(fps * frame_skip, 2),
        )

    def _status(self, camera: CameraRuntime, now: float, settings: _Settings) -> WindowStatus:
        """The counts-body fields of a camera (a lane, or after the lanes ended)."""
        with self._counters:
            fps = camera.fps(now, self._fps_window_s)
        return WindowStatus(round(fps * settings.frame_skip, 2), settings.tier_name, camera.source.stats.frames_dropped)

    def _collect(self, max_batch: int, frame_skip: int) -> List[_Taken]:
        """The newest due frame of each camera, up to `max_batch` (under _taking). A frame's pacing
        is settled here, in the order frames are taken, whichever lane finishes first."""
        batch: List[_Taken] = []
        count = len(self.cameras)
        for offset in range(count):
            camera = self.cameras[(self._first + offset) % count]
            frame = camera.source.take()
            if frame is None:
                continue
            if not camera.due(frame, frame_skip):
                with self._counters:
                    camera.skipped += 1
                continue
            batch.append(_Taken(camera, frame, camera.seconds_for(frame, frame_skip)))
            camera.last_timestamp = frame.timestamp
            if len(batch) >= max_batch:
                break
        # Start one camera later next time, so no camera is always first when the batch is full.
        self._first = (self._first + 1) % count
        return batch

    def _run(self, lane: int) -> None:
        try:
            self._loop(lane)
        except BaseException as exc:  # surfaced to the daemon, which decides to exit or restart
            if self.error is None:
                log.exception("inference lane %d failed", lane + 1)
                self.error = exc
            self._stop.set()  # the other lanes end too: the pipeline has failed
        finally:
            with self._lock:
                self._using.pop(lane, None)

    def _queue_analysis(self, job: "_AnalysisJob") -> None:
        """Hand a job to the analysis thread; if that thread has died, stop the lane too (its
        error is in `self.error`) rather than wait on a queue nobody empties."""
        while True:
            try:
                self._analysis_queue.put(job, timeout=0.5)
                return
            except queue.Full:
                if self._analysis_thread is None or not self._analysis_thread.is_alive():
                    raise RuntimeError("the analysis thread has stopped") from self.error

    def _close_windows(self, now: float) -> None:
        """Queue the final close of every camera's windows (the lanes have ended). A file read
        faster than real time is ahead of the clock: its windows close from its last frame's
        time, so none stays open."""
        if self._analysis_thread is None or not self._analysis_thread.is_alive():
            return
        with self._lock:
            settings = self._settings
        try:
            for camera in self.cameras:
                end = max(now, camera.last_timestamp if camera.last_timestamp is not None else now)
                self._queue_analysis(_AnalysisJob(camera, end, self._status(camera, now, settings), final=True))
        except RuntimeError:
            log.warning("open windows not closed: the analysis thread has stopped")

    def _finish_analysis(self) -> None:
        """Let the analysis thread drain what the lanes queued, then end it."""
        if self._analysis_thread is not None and self._analysis_thread.is_alive():
            self._analysis_queue.put(None)
            self._analysis_thread.join(timeout=30)

    def _run_analysis(self) -> None:
        while True:
            job = self._analysis_queue.get()
            if job is None:
                return
            try:
                started = time.perf_counter()
                if job.frame is not None and job.detections is not None:
                    job.camera.analyser.update(job.frame, job.detections, job.seconds)
                job.camera.analyser.poll(job.now, job.status, final=job.final)
                if job.frame is not None:
                    done = time.perf_counter()
                    self.timer.add("analysis", done - started)
                    if job.frame.read_at > 0:
                        self.timer.add(LATENCY, done - job.frame.read_at)
                        self.timer.add(DECODED_LATENCY, done - job.frame.read_at - job.frame.decode_s)
            except BaseException as exc:
                log.exception("analysis failed")
                self.error = exc
                return

    def _settings_for(self, lane: int) -> _Settings:
        """The settings this lane's next batch runs with; closes retired detectors no lane uses."""
        with self._lock:
            settings = self._settings
            self._using[lane] = settings.detector
            idle = [old for old in self._retired if all(old is not used for used in self._using.values())]
            self._retired = [old for old in self._retired if all(old is not done for done in idle)]
        for old in idle:
            old.close()
        return settings

    def _loop(self, lane: int) -> None:
        while not self._stop.is_set():
            settings = self._settings_for(lane)
            if lane >= settings.detector.lanes:  # this tier's engine runs fewer calls at once
                if self._ended:
                    return
                self._stop.wait(0.1)
                continue
            with self._taking:
                if self._ended:
                    return
                self._frame_ready.clear()  # before collecting: a frame arriving after this sets it again
                batch = self._collect(max(1, settings.detector.max_batch), settings.frame_skip)
                now = self._clock()
                ended = self._ended = not batch and all(camera.source.finished for camera in self.cameras)
                poll = not batch and now - self._polled_at >= IDLE_POLL_S
                if poll:
                    self._polled_at = now
                ticket = self._in_order.ticket() if batch or ended or poll else None
            if batch:
                assert ticket is not None
                self._process(settings, batch, ticket)
            elif ended:
                assert ticket is not None
                final = [
                    _AnalysisJob(
                        camera,
                        camera.last_timestamp if camera.last_timestamp is not None else self._clock(),
                        self._status(camera, self._clock(), settings),
                        final=True,
                    )
                    for camera in self.cameras
                ]
                self._in_order.done(ticket, final)
                return
            else:
                if ticket is not None:
                    realtime = [camera for camera in self.cameras if camera.source.realtime]
                    self._in_order.done(
                        ticket, [_AnalysisJob(camera, now, self._status(camera, now, settings)) for camera in realtime]
                    )
                self._frame_ready.wait(0.1)

    def _process(self, settings: _Settings, batch: List[_Taken], ticket: int) -> None:
        """Detect on one batch and hand each frame's detections on in the ticket's order (the
        ticket passes with no jobs when detection failed, so no later frame waits for it)."""
        jobs: List[_AnalysisJob] = []
        try:
            results = self._detect(settings.detector, [taken.frame.image for taken in batch])
            jobs = self._jobs(settings, batch, results)
        finally:
            self._in_order.done(ticket, jobs)
        with self._counters:
            self.batches += 1

    def _detect(self, detector: Detector, images: List[Image]) -> List[Detections]:
        t0 = time.perf_counter()
        prepared = detector.preprocess(images)
        t1 = time.perf_counter()
        outputs = detector.infer(prepared)
        t2 = time.perf_counter()
        results = detector.postprocess(outputs, prepared)
        t3 = time.perf_counter()
        self.timer.add("preprocess", t1 - t0)
        self.timer.add("inference", t2 - t1)
        self.timer.add("postprocess", t3 - t2)
        return results

    def _jobs(self, settings: _Settings, batch: List[_Taken], results: List[Detections]) -> List[_AnalysisJob]:
        now = self._clock()
        jobs = []
        for taken, detections in zip(batch, results):
            self.timer.add("decode", taken.frame.decode_s)
            with self._counters:
                taken.camera.processed += 1
                taken.camera.processed_times.append(now)
            status = self._status(taken.camera, now, settings)
            jobs.append(
                _AnalysisJob(
                    taken.camera,
                    taken.frame.timestamp,
                    status,
                    frame=taken.frame,
                    detections=detections,
                    seconds=taken.seconds,
                )
            )
        return jobs
