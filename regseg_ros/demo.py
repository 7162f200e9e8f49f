"""
Play the bundled sample drive through the segmentation node over DDS and save the overlays.

``regseg_demo`` starts ``segmentation_node`` as its own process (CPU backend by default),
publishes the sample frames as ``sensor_msgs/Image`` at a camera-like rate, writes the
``~/overlay`` images it gets back as PNG files and prints rate and latency. DDS stays on this
machine (loopback + shared memory) unless the caller's environment already chose otherwise.
"""

import argparse
import os
from pathlib import Path
import shutil
import signal
import subprocess
import sys
import time
from typing import Dict, List, Optional

import cv2
import numpy as np

SAMPLE_DIR = Path(__file__).resolve().parent / 'data' / 'sample'
OUTPUTS = ('overlay', 'labels', 'drivable_mask')
WARMUP_SEQ = 999_999  # frame index of the warm-up frame (stamp microseconds)


def fastdds_profile() -> Optional[Path]:
    """Find the shipped Fast DDS loopback profile (installed share/ or the source tree)."""
    candidates = [Path(__file__).resolve().parent.parent / 'config' / 'fastdds_loopback.xml']
    try:
        from ament_index_python.packages import get_package_share_directory
        candidates.insert(0, Path(get_package_share_directory('regseg_ros')) / 'config' /
                          'fastdds_loopback.xml')
    except Exception:  # noqa: B902 no ament index (plain checkout): fall back to the source tree
        pass
    return next((p for p in candidates if p.is_file()), None)


def confine_dds(env: Dict[str, str]) -> Dict[str, str]:
    """Keep DDS discovery and traffic on this machine unless the environment already says."""
    env.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    profile = fastdds_profile()
    if profile is not None:
        env.setdefault('FASTDDS_DEFAULT_PROFILES_FILE', str(profile))
    env.setdefault('ROS_DOMAIN_ID', str(100 + os.getpid() % 100))
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


def load_frames(folder: Path, width: int = 0) -> List[np.ndarray]:
    """Read the sample frames as RGB (optionally resized to ``width``, keeping the aspect)."""
    files = sorted(folder.glob('*.jpg')) + sorted(folder.glob('*.png'))
    if not files:
        raise SystemExit(f'no .jpg/.png frames in {folder}')
    frames = []
    for f in files:
        rgb = cv2.cvtColor(cv2.imread(str(f), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
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
                raise SystemExit(f'segmentation_node exited with {self.proc.returncode}')
            if self.pub.get_subscription_count():
                self.publish(first, WARMUP_SEQ)
                self.spin(1.0)
                if all(WARMUP_SEQ in r for r in self.received.values()):
                    self.reset()
                    return
            else:
                self.spin(0.2)
        raise SystemExit('segmentation_node did not answer within '
                         f'{timeout:.0f} s; see its log')

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
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument('--weights', default=os.environ.get('REGSEG_WEIGHTS', ''),
                        help='checkpoint path/URL/released name (default: $REGSEG_WEIGHTS; '
                             'empty runs UNTRAINED weights)')
    parser.add_argument('--frames-dir', type=Path, default=SAMPLE_DIR)
    parser.add_argument('--output', type=Path, default=Path('demo_output'))
    parser.add_argument('--rate', type=float, default=10.0, help='camera rate in Hz')
    parser.add_argument('--loops', type=int, default=1, help='play the sequence N times')
    parser.add_argument('--network-size', default='512x1024', help='HxW network input')
    parser.add_argument('--device', default='cpu')
    args = parser.parse_args(argv)
    confine_dds(os.environ)  # before rclpy is imported, for this process too
    height, width = (int(v) for v in args.network_size.lower().split('x'))
    node_args = ['-p', f'network_height:={height}', '-p', f'network_width:={width}',
                 '-p', f'device:={args.device}']
    node_args += (['-p', f'weights:={args.weights}'] if args.weights
                  else ['-p', 'allow_untrained:=true'])
    if not args.weights:
        print('no --weights / $REGSEG_WEIGHTS: the node runs UNTRAINED weights, so the overlays '
              'show noise; see the README for the released checkpoints', file=sys.stderr)
    frames = load_frames(args.frames_dir) * args.loops
    args.output.mkdir(parents=True, exist_ok=True)
    session = NodeSession(node_args, log_path=args.output / 'segmentation_node.log')
    try:
        session.wait_ready(frames[0])
        session.play(frames, args.rate)
    finally:
        code = session.close()
    for seq, msg in sorted(session.received['overlay'].items()):
        rgb = np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.width, 3)
        cv2.imwrite(str(args.output / f'overlay_{seq:04d}.png'), rgb[..., ::-1])
    stats = summary(session, len(frames))
    print(f'sample: {len(frames)} frames {frames[0].shape[1]}x{frames[0].shape[0]} at '
          f'{args.rate:g} Hz -> network {width}x{height}, backend torch/{args.device}')
    for key, value in stats.items():
        print(f'  {key:18s} {value:.1f}' if isinstance(value, float) else
              f'  {key:18s} {value}')
    print(f'overlays: {args.output}/overlay_*.png ({len(session.received["overlay"])} files); '
          f'node log: {args.output}/segmentation_node.log; node exit code {code}')
    return 0 if code == 0 and stats['frames_segmented'] > 0 else 1


if __name__ == '__main__':
    sys.exit(main())
