# Source me: point ROS 2 tools at the venv and keep DDS on this machine.
#   . scripts/ros_env.sh            (uses .venv, or $REGSEG_VENV)
_regseg_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
_regseg_venv=$(cd "$_regseg_root" && cd "${REGSEG_VENV:-.venv}" && pwd)
export AMENT_PREFIX_PATH="$_regseg_venv${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
export PATH="$_regseg_venv/bin:$PATH"
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
# Fast DDS 3 (Kilted and newer) reads FASTDDS_...; Fast DDS 2 (Humble, Iron, Jazzy) reads only
# FASTRTPS_..., which Fast DDS 3 warns about: set it only where the distro uses Fast DDS 2.
export FASTDDS_DEFAULT_PROFILES_FILE="$_regseg_root/config/fastdds_loopback.xml"
case "${ROS_DISTRO:-}" in
    humble|iron|jazzy) export FASTRTPS_DEFAULT_PROFILES_FILE="$FASTDDS_DEFAULT_PROFILES_FILE" ;;
esac
# An own domain, 1..101: on Linux higher ids put DDS ports into the ephemeral range.
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-$((1 + $$ % 101))}
unset _regseg_root _regseg_venv
