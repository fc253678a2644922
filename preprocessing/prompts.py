"""Default prompts: one video prompt per paper task, and generic keyframe prompts.

The keyframe prompts describe the moment of grasp, like the five generic prompts the authors'
release averaged (wording here is ours).
"""

TASK_PROMPTS = {
    "pick-place-v3": (
        "A robot arm grasps the red puck on the table and places it at the goal position."
    ),
    "pick-out-of-hole-v3": (
        "A robot arm reaches into the hole, grasps the red peg and lifts it out."
    ),
    "bin-picking-v3": (
        "A robot arm picks the green block from the red bin and puts it into the blue bin."
    ),
    "shelf-place-v3": "A robot arm picks up the blue block and places it on the wooden shelf.",
    "disassemble-v3": "A robot arm grasps the nut handle and lifts the nut off the peg.",
}

KEYFRAME_PROMPTS = (
    "a robot gripper grasping an object",
    "a robot arm holding an object in its gripper",
    "the robot picks up the object",
    "a close-up of a robot gripper closed around an object",
    "a robot lifting an object from the table",
)


def task_prompt(task: str) -> str:
    """The video prompt for a task id; a generic one for tasks outside the paper's five."""
    return TASK_PROMPTS.get(task, f"A robot arm solves the {task.removesuffix('-v3')} task.")
