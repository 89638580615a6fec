"""nbgrader settings for this repository: it is an nbgrader course whose source folder is labs/.

`nbgrader generate_assignment idt` (or `make student` for every lab) writes the student version to
build/student/idt/idt.ipynb; submissions, autograded copies, feedback and the gradebook all live under build/.
The folder names are in helpers/classroom.py (REPO_LAYOUT); labs/README.md is the instructor's guide.
"""
from pathlib import Path

from helpers.classroom import REPO_LAYOUT, course_config

c = get_config()  # noqa: F821 -- traitlets provides get_config() when nbgrader loads this file
c.merge(course_config(Path(__file__).resolve().parent, REPO_LAYOUT))
