"""The project root of a DVC experiment workspace: `dvc exp run --temp` and `--queue` run each experiment in a
throw-away copy under <project>/.dvc/tmp/exps/; the MLflow store and the teacher cache must be the project's.
(The end-to-end `dvc exp run --temp` test: tests/dag/test_temp_experiment.py.)"""

from medaug.llm.teacher import make_teacher
from medaug.params import TeacherParams
from medaug.paths import project_root


def test_an_experiment_workspace_belongs_to_the_project_around_it(tmp_path):
    project = tmp_path / "project"
    temp = project / ".dvc/tmp/exps/standalone/tmpabc123"
    queued = project / ".dvc/tmp/exps/tmpdef456"
    for d in (temp, queued):
        d.mkdir(parents=True)
    assert project_root(temp) == project_root(queued) == project_root(project) == project.resolve()
    assert project_root(tmp_path / "elsewhere") == (tmp_path / "elsewhere").resolve()


def test_a_temp_experiment_uses_the_project_teacher_cache(tmp_path):
    temp = tmp_path / "project/.dvc/tmp/exps/standalone/tmpabc123"
    temp.mkdir(parents=True)
    teacher = make_teacher(TeacherParams(backend="openai", model="m", cache=".cache/teacher.sqlite"), temp)
    assert teacher.cache.path == tmp_path.resolve() / "project/.cache/teacher.sqlite"
    assert not (temp / ".cache").exists()
