# Copyright 2026 regseg_ros maintainers
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.

"""
Play the bundled sample drive through the segmentation node over DDS and save the overlays.

``regseg_demo`` starts ``segmentation_node`` as its own process (CPU backend by default),
publishes the sample frames as ``sensor_msgs/Image`` at a camera-like rate, writes the
``~/overlay`` images it gets back as PNG files and prints rate and latency. DDS stays on this
machine (loopback + shared memory) unless the caller's environment already chose otherwise.

Weights: ``--weights`` / ``$REGSEG_WEIGHTS`` when given (a failure there is an error); else the
authors' ``cityscapes_exp48_trainval`` checkpoint, downloaded once into the cache and
sha256-checked; when that cannot be had (offline shows within seconds) the node runs random
weights, and the summary and every overlay image say so.
"""

import os
from pathlib import Path
import shutil
import signal
import subprocess
import sys
import time
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np
from regseg_ros.core.errors import RegsegError
from regseg_ros.tools.cli import ArgumentParser, err, format_size, parse_size, positive

SAMPLE_DIR = Path(__file__).resolve().parent.parent / 'data' / 'sample'
OUTPUTS = ('overlay', 'labels', 'drivable_mask')
WARMUP_SEQ = 999_999  # frame index of the warm-up frame (stamp microseconds)
DEFAULT_CHECKPOINT = 'cityscapes_exp48_trainval'
CONNECT_TIMEOUT = 5.0  # seconds to reach the download server before running random weights
NODE_LOG = 'segmentation_node.log'
OWN_FILES = ('overlay_*.png', NODE_LOG)  # what a run writes into --output (and clears first)
HOW_TO_GET_WEIGHTS = 'real weights: REGSEG_WEIGHTS=<checkpoint> or --weights <checkpoint>'
# The node's network_height / network_width ranges (segmentation_node --help): checked here so
# a bad size is a usage error of the demo, not a node that fails to start.
NODE_NETWORK_HEIGHT = (64, 4096)
NODE_NETWORK_WIDTH = (64, 8192)
RANDOM_BANNER = ('RANDOM WEIGHTS (untrained): these labels are meaningless', HOW_TO_GET_WEIGHTS)


def fastdds_profile() -> Optional[Path]:
    """Find the shipped Fast DDS loopback profile (installed share/ or the source tree)."""
    candidates = [Path(__file__).resolve().parents[2] / 'config' / 'fastdds_loopback.xml']
    try:
        from ament_index_python.packages import get_package_share_directory
        candidates.insert(0, Path(get_package_share_directory('regseg_ros')) / 'config' /
                          'fastdds_loopback.xml')
    except Exception:  # noqa: B902 no ament index (plain checkout): fall back to the source tree
        pass
    return next((p for p in candidates if p.is_file()), None)


def profile_variables(distro: str) -> List[str]:
    """
    Return the environment variables that point Fast DDS of ROS 2 ``distro`` at a profile.

    Fast DDS 3 (Kilted and newer) reads FASTDDS_DEFAULT_PROFILES_FILE and warns that
    FASTRTPS_DEFAULT_PROFILES_FILE is deprecated; Fast DDS 2 (Humble, Iron, Jazzy) reads only
    the FASTRTPS_ one. Both are set where the distro uses Fast DDS 2.
    """
    names = ['FASTDDS_DEFAULT_PROFILES_FILE']
    if distro.lower() in ('humble', 'iron', 'jazzy'):
        names.append('FASTRTPS_DEFAULT_PROFILES_FILE')
    return names


def confine_dds(env: Dict[str, str]) -> Dict[str, str]:
    """Keep DDS discovery and traffic on this machine unless the environment already says."""
    env.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    profile = fastdds_profile()
    if profile is not None:
        for name in profile_variables(env.get('ROS_DISTRO', '')):
            env.setdefault(name, str(profile))
    # 1..101: on Linux higher domain ids put DDS ports into the ephemeral range (ROS 2 docs).
    env.setdefault('ROS_DOMAIN_ID', str(1 + os.getpid() % 101))
    return env


def node_command(executable: str = 'segmentation_node') -> List[str]:
    """Return the console script beside this interpreter, else on PATH, else ``python -m``."""
    script = Path(sys.executable).parent / executable
    if script.exists():
        return [str(script)]
    found = shutil.which(executable)
    if found:
        return [found]
    module = {'regseg_demo': 'demo'}.get(executable, executable)
    return [sys.executable, '-m', f'regseg_ros.{module}']


def clear_outputs(folder: Path) -> int:
    """Remove the files an earlier run wrote into ``folder`` (overlays, node log); keep others."""
    removed = 0
    for pattern in OWN_FILES:
        for path in folder.glob(pattern):
            if path.is_file():
                path.unlink()
                removed += 1
    return removed


def choose_weights(explicit: str, cache_dir: Optional[str]) -> Tuple[str, str, str]:
    """
    Return ``(weights for the node, what to call them, why they are random or '')``.

    Explicit weights go to the node as given: if they fail, the node's start-up error is the
    demo's error. Otherwise the authors' checkpoint is fetched (cached, sha256-checked); when
    that fails, random weights run and the reason is returned.
    """
    if explicit:
        return explicit, explicit, ''
    from regseg_ros.model.weights import resolve_weights
    start = time.monotonic()
    try:
        path = resolve_weights(DEFAULT_CHECKPOINT, cache_dir, connect_timeout=CONNECT_TIMEOUT)
    except RegsegError as exc:
        return '', 'RANDOM (untrained)', f'{exc} [gave up after {time.monotonic() - start:.1f} s]'
    return str(path), f'{DEFAULT_CHECKPOINT} ({path}, sha256-checked)', ''


def mark_random(bgr: np.ndarray, lines=RANDOM_BANNER) -> np.ndarray:
    """Draw ``lines`` in white on a black band across the top of the image (in place)."""
    width = bgr.shape[1]
    font, thickness = cv2.FONT_HERSHEY_SIMPLEX, 1 if width < 1400 else 2
    scale = max(0.4, min(width / 1100, 2.0))
    wrapped = []
    for line in lines:  # wrap at spaces where a line is wider than the image
        current = ''
        for word in line.split(' '):
            candidate = f'{current} {word}'.strip()
            if current and cv2.getTextSize(candidate, font, scale, thickness)[0][0] > width - 16:
                wrapped.append(current)
                candidate = word
            current = candidate
        wrapped.append(current)
    line_height = cv2.getTextSize('Ag', font, scale, thickness)[0][1] * 2
    cv2.rectangle(bgr, (0, 0), (width - 1, line_height * len(wrapped) + line_height // 2),
                  (0, 0, 0), thickness=-1)
    for i, text in enumerate(wrapped):
        cv2.putText(bgr, text, (8, line_height * (i + 1)), font, scale, (255, 255, 255),
                    thickness, cv2.LINE_AA)
    return bgr


def node_failure(log_path: Optional[Path], tail: int = 8) -> str:
    """Return the node's FATAL lines from its log, else its last lines."""
    try:
        lines = [line.rstrip() for line in log_path.read_text(errors='replace').splitlines()
                 if line.strip()]
    except (AttributeError, OSError):
        return '(no node log)'
    fatal = [line for line in lines if '[FATAL]' in line]
    return '\n'.join(fatal or lines[-tail:]) or '(the node log is empty)'


def load_frames(folder: Path, width: int = 0) -> List[np.ndarray]:
    """Read the sample frames as RGB (optionally resized to ``width``, keeping the aspect)."""
    files = sorted(folder.glob('*.jpg')) + sorted(folder.glob('*.png'))
    if not files:
        raise RegsegError(f'no .jpg/.png frames in {str(folder)!r}: pass a folder of camera '
                          'frames with --frames-dir')
    frames = []
    for f in files:
        bgr = cv2.imread(str(f), cv2.IMREAD_COLOR)
        if bgr is None:
            raise RegsegError(f'cannot decode the frame {str(f)!r} (not a readable JPEG/PNG): '
                              'remove it from --frames-dir')
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        if width and rgb.shape[1] != width:
            rgb = cv2.resize(rgb, (width, rgb.shape[0] * width // rgb.shape[1]),
                             interpolation=cv2.INTER_LINEAR)
        frames.append(rgb)
    return frames


class NodeSession:
    """The node process plus a peer that publishes frames and collects outputs with latency."""

    def __init__(self, node_args: List[str], camera: str = '/demo/camera/image_raw',
                 outputs=OUTPUTS, log_path: Optional[Path] = None):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image

        self.rclpy, self.Image = rclpy, Image
        self.log_path = log_path
        self.log = open(log_path, 'w') if log_path else None
        self.proc = subprocess.Popen(
            node_command() + ['--ros-args', '-r', '__node:=regseg', '-r', f'image:={camera}',
                              *node_args],
            env=confine_dds(dict(os.environ)), stdout=self.log, stderr=subprocess.STDOUT)
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node('regseg_demo_camera', context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.pub = self.node.create_publisher(Image, camera, 2)
        self.received: Dict[str, Dict[int, object]] = {name: {} for name in outputs}
        self.sent_at: Dict[int, float] = {}
        self.arrived: Dict[int, float] = {}
        self._messages: Dict[int, object] = {}
        self.latency: Dict[int, float] = {}
        qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        for name in outputs:
            self.node.create_subscription(Image, f'/regseg/{name}',
                                          lambda m, n=name: self._on_output(n, m), qos)

    def _on_output(self, name, msg):
        seq = msg.header.stamp.nanosec // 1000  # frame index rides in the stamp's microseconds
        self.received[name][seq] = msg
        if name == 'labels' and seq in self.sent_at:
            self.arrived[seq] = time.monotonic()
            self.latency[seq] = self.arrived[seq] - self.sent_at[seq]

    def spin(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while True:
            self.executor.spin_once(timeout_sec=max(0.0, min(0.01, end - time.monotonic())))
            if time.monotonic() >= end:
                return

    def wait_ready(self, first: np.ndarray, timeout: float = 120.0) -> None:
        """Wait for the node to subscribe and answer a first frame (model load, warm-up)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RegsegError(
                    f'segmentation_node could not start (exit code {self.proc.returncode}):\n'
                    f'{node_failure(self.log_path)}\n(full log: {self.log_path})')
            if self.pub.get_subscription_count():
                self.publish(first, WARMUP_SEQ)
                self.spin(1.0)
                if all(WARMUP_SEQ in r for r in self.received.values()):
                    self.reset()
                    return
            else:
                self.spin(0.2)
        raise RegsegError(
            f'segmentation_node did not answer within {timeout:.0f} s; its last lines:\n'
            f'{node_failure(self.log_path)}\n(full log: {self.log_path})')

    def reset(self) -> None:
        """Forget what was received so far."""
        for received in self.received.values():
            received.clear()
        self.latency.clear()
        self.arrived.clear()

    def publish(self, rgb: np.ndarray, seq: int) -> None:
        """Publish one frame; messages are built once per frame array, like a camera driver."""
        msg = self._messages.get(id(rgb))
        if msg is None:
            msg = self._messages[id(rgb)] = self.Image()
            msg.header.frame_id = 'demo_camera'
            msg.height, msg.width = rgb.shape[:2]
            msg.encoding, msg.step = 'rgb8', rgb.shape[1] * 3
            msg.data = rgb.tobytes()
        msg.header.stamp.sec = int(time.time())
        msg.header.stamp.nanosec = seq * 1000
        self.sent_at[seq] = time.monotonic()
        self.pub.publish(msg)

    def play(self, frames: List[np.ndarray], rate_hz: float, settle: float = 3.0) -> None:
        """Publish ``frames`` at ``rate_hz``, then wait ``settle`` s for the last answers."""
        start = time.monotonic()
        for seq, rgb in enumerate(frames):
            due = start + seq / rate_hz
            self.spin(max(0.0, due - time.monotonic()))
            self.publish(rgb, seq)
        self.spin(settle)

    def close(self) -> int:
        self.executor.shutdown()
        self.node.destroy_node()
        self.rclpy.try_shutdown(context=self.context)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.log:
            self.log.close()
        return self.proc.returncode


def summary(session: NodeSession, sent: int) -> Dict[str, float]:
    """Return rate and latency of a playback."""
    lat = np.array(list(session.latency.values())) * 1e3
    times = sorted(session.arrived.values())
    got = len(session.received['labels'])
    return {
        'frames_sent': sent,
        'frames_segmented': got,
        'frames_dropped': sent - got,
        'output_rate_hz': (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0,
        'latency_ms_p50': float(np.percentile(lat, 50)) if lat.size else float('nan'),
        'latency_ms_p95': float(np.percentile(lat, 95)) if lat.size else float('nan'),
    }


def main(argv=None) -> int:
    """Run the demo; see ``--help``."""
    parser = ArgumentParser(prog='regseg_demo', description=__doc__.strip().splitlines()[0])
    parser.add_argument('--weights', default=os.environ.get('REGSEG_WEIGHTS', ''),
                        help='checkpoint: a path, an https:// URL or a released name (default: '
                             f'$REGSEG_WEIGHTS, else {DEFAULT_CHECKPOINT}, downloaded once; '
                             'random weights, marked as such, when it cannot be downloaded)')
    parser.add_argument('--cache-dir', default=None,
                        help='where downloaded weights are kept (default: $REGSEG_CACHE_DIR, '
                             'else ~/.cache/regseg_ros)')
    parser.add_argument('--frames-dir', type=Path, default=SAMPLE_DIR)
    parser.add_argument('--output', type=Path, default=Path('demo_output'),
                        help='folder for overlay_*.png and the node log; those of an earlier '
                             'run are removed first (default: %(default)s)')
    parser.add_argument('--rate', type=positive(float), default=10.0, help='camera rate in Hz')
    parser.add_argument('--loops', type=positive(int), default=1,
                        help='play the sequence N times')
    parser.add_argument('--network-size', type=parse_size, default='1024x512', metavar='WxH',
                        help='network input size, width x height (default: 1024x512)')
    parser.add_argument('--device', default='cpu')
    args = parser.parse_args(argv)
    height, width = args.network_size
    if not (NODE_NETWORK_HEIGHT[0] <= height <= NODE_NETWORK_HEIGHT[1]
            and NODE_NETWORK_WIDTH[0] <= width <= NODE_NETWORK_WIDTH[1]):
        parser.error(f'argument --network-size: {format_size((height, width))} is outside what '
                     f'the node takes: width {NODE_NETWORK_WIDTH[0]}..{NODE_NETWORK_WIDTH[1]}, '
                     f'height {NODE_NETWORK_HEIGHT[0]}..{NODE_NETWORK_HEIGHT[1]}')
    try:
        return run(args)
    except RegsegError as exc:
        err(f'regseg_demo: error: {exc}')
        return 1


def run(args) -> int:
    """Play the frames through the node with the parsed options; return the exit status."""
    confine_dds(os.environ)  # before rclpy is imported, for this process too
    height, width = args.network_size
    frames = load_frames(args.frames_dir) * args.loops
    try:
        args.output.mkdir(parents=True, exist_ok=True)
        clear_outputs(args.output)
    except OSError as exc:
        raise RegsegError(f'cannot use the output folder {str(args.output)!r} ({exc}): pass a '
                          'writable folder with --output') from None
    weights, weights_name, random_reason = choose_weights(args.weights, args.cache_dir)
    if random_reason:
        err(f'regseg_demo: warning: could not get the checkpoint {DEFAULT_CHECKPOINT}: '
            f'{random_reason}')
        err('regseg_demo: warning: running RANDOM (UNTRAINED) weights: the overlays show noise '
            f'and are marked so; {HOW_TO_GET_WEIGHTS}')
    node_args = ['-p', f'network_height:={height}', '-p', f'network_width:={width}',
                 '-p', f'device:={args.device}']
    node_args += (['-p', f'weights:={weights}'] if weights
                  else ['-p', 'allow_untrained:=true'])
    session = NodeSession(node_args, log_path=args.output / NODE_LOG)
    try:
        session.wait_ready(frames[0])
        session.play(frames, args.rate)
    finally:
        code = session.close()
    for seq, msg in sorted(session.received['overlay'].items()):
        rgb = np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.width, 3)
        bgr = np.ascontiguousarray(rgb[..., ::-1])
        if random_reason:
            mark_random(bgr)
        cv2.imwrite(str(args.output / f'overlay_{seq:04d}.png'), bgr)
    stats = summary(session, len(frames))
    print(f'sample: {len(frames)} frames {frames[0].shape[1]}x{frames[0].shape[0]} at '
          f'{args.rate:g} Hz -> network {format_size((height, width))}, '
          f'backend torch/{args.device}')
    print(f'weights: {weights_name}')
    if random_reason:
        print('  RANDOM WEIGHTS: the labels are meaningless and every overlay says so; for '
              'real segmentation run again with REGSEG_WEIGHTS=<checkpoint> or --weights '
              f'<checkpoint> (a path, an https:// URL or a released name such as '
              f'{DEFAULT_CHECKPOINT}); why: {random_reason}')
    for key, value in stats.items():
        print(f'  {key:18s} {value:.1f}' if isinstance(value, float) else
              f'  {key:18s} {value}')
    print(f'overlays: {args.output}/overlay_*.png ({len(session.received["overlay"])} files); '
          f'node log: {args.output}/{NODE_LOG}; node exit code {code}')
    if code != 0:
        err(f'regseg_demo: error: segmentation_node exited with {code}:\n'
            f'{node_failure(session.log_path)}')
    return 0 if code == 0 and stats['frames_segmented'] > 0 else 1


if __name__ == '__main__':
    sys.exit(main())
