# Source me: point ROS 2 tools at the venv and keep DDS on this machine.
#   . scripts/ros_env.sh            (uses .venv, or $REGSEG_VENV)
_regseg_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
_regseg_venv=$(cd "$_regseg_root" && cd "${REGSEG_VENV:-.venv}" && pwd)
export AMENT_PREFIX_PATH="$_regseg_venv${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
export PATH="$_regseg_venv/bin:$PATH"
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
# Fast DDS 3 (Kilted) reads FASTDDS_..., Fast DDS 2 (Humble, Jazzy) FASTRTPS_...: set both.
export FASTDDS_DEFAULT_PROFILES_FILE="$_regseg_root/config/fastdds_loopback.xml"
export FASTRTPS_DEFAULT_PROFILES_FILE="$FASTDDS_DEFAULT_PROFILES_FILE"
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-$((100 + $$ % 100))}
unset _regseg_root _regseg_venv
