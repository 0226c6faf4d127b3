"""Fault injection for the end-to-end kill tests, in every Python process started with this folder on PYTHONPATH
(Ray workers, submitit jobs, torchrun ranks and the command line inherit it). Inert unless EB_STUDY_FAULT is set.

EB_STUDY_FAULT = 'PREFIX:EPOCH:WHERE:SIGNAL', EB_STUDY_FAULT_ONCE = a file path. The first process of the whole run to
reach WHERE in epoch EPOCH (1-based) of a training stage whose folder name starts with PREFIX sends itself SIGNAL:
  mid-epoch       half-way through that epoch's training batches (what an outside kill at a random moment hits most)
  between-writes  after that epoch's checkpoint is written and before its log is (the window of issue 29)
Before it does, it creates the ONCE file exclusively (so the fault fires once, whoever reaches it first; a retried or
requeued job runs clean), writes its pid and stage folder there as JSON, and copies the stage's checkpoint beside it as
ONCE.checkpoint.pt: what a resumed stage must keep, for the test to compare."""
import os
import sys

if os.environ.get('EB_STUDY_FAULT'):
    import importlib.abc
    import importlib.machinery

    def _fire(trainer, sig):
        import json, shutil
        once = os.environ['EB_STUDY_FAULT_ONCE']
        try: fd = os.open(once, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError: return
        if trainer.ckpt_path.exists(): shutil.copyfile(trainer.ckpt_path, once + '.checkpoint.pt')
        os.write(fd, json.dumps(dict(pid=os.getpid(), stage=str(trainer.run_dir), argv=sys.argv)).encode()); os.close(fd)
        os.kill(os.getpid(), sig)

    def _install(train):
        import signal
        prefix, epoch, where, sig = os.environ['EB_STUDY_FAULT'].split(':')
        epoch, sig = int(epoch), getattr(signal, sig)
        ours = lambda t: t.run_dir is not None and t.run_dir.name.startswith(prefix)
        if where == 'between-writes':
            write_log = train.Trainer.write_log
            def faulty_write_log(self):
                if ours(self) and self.epoch == epoch: _fire(self, sig)  # (the epoch just checkpointed)
                write_log(self)
            train.Trainer.write_log = faulty_write_log
        elif where == 'mid-epoch':
            call = train.Trainer._call
            def faulty_call(self, event):
                if event == 'before_epoch': self._fault_steps = 0
                if event == 'after_step' and ours(self) and self.epoch + 1 == epoch:
                    self._fault_steps += 1
                    if self._fault_steps == max(1, len(self.train_dl) // 2): _fire(self, sig)
                return call(self, event)
            train.Trainer._call = faulty_call
        else: raise ValueError(f"EB_STUDY_FAULT: WHERE must be mid-epoch or between-writes, got {where!r}")

    class _PatchEngine(importlib.abc.MetaPathFinder):
        "Patch eb_study.train as it is first imported."
        def find_spec(self, name, path, target=None):
            if name != 'eb_study.train': return None
            sys.meta_path.remove(self)
            spec = importlib.machinery.PathFinder.find_spec(name, path)
            exec_module = spec.loader.exec_module
            def patched(module): exec_module(module); _install(module)
            spec.loader.exec_module = patched
            return spec

    sys.meta_path.insert(0, _PatchEngine())
