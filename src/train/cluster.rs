//! Scripts that hand an experiment's jobs to an existing scheduler (no home-made one): a Slurm
//! job array with a dependent report job, or a Kubernetes Indexed Job. Every array task runs
//! `opencarbon run <experiment> --index I`; the job claims (`track::claim`) keep tasks that
//! share a results directory from running a job twice (a task whose job another process
//! runs waits for it, so its exit code says whether the job is done), and `report` writes the
//! tables of every finished run and exits non-zero naming any job that is missing or failed,
//! so the dependent report job fails visibly without costing the whole table.

use std::path::{Path, PathBuf};

use super::plan::Plan;
use crate::error::{Error, Result};

/// What `emit` writes, by file name.
pub struct Emitted {
    pub files: Vec<(String, String)>,
    /// How to submit them.
    pub submit: String,
}

/// Options shared by the schedulers.
pub struct EmitOptions {
    /// Most array tasks running at once (0 = no limit).
    pub parallel: usize,
    /// CPU cores per task.
    pub cpus: usize,
}

fn absolute(p: &Path) -> Result<PathBuf> {
    if p.is_absolute() {
        Ok(p.to_path_buf())
    } else {
        let cwd = std::env::current_dir().map_err(|e| Error::io(Path::new("."), e))?;
        Ok(cwd.join(p))
    }
}

/// Single-quote for a POSIX shell.
fn quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', r"'\''"))
}

/// A Slurm array over the plan's jobs plus a report job that runs after all of them ended,
/// failed or not (`afterany`; `report` decides). Paths are absolute (Slurm starts tasks elsewhere); the binary is the
/// one that wrote the scripts.
pub fn slurm(plan: &Plan, options: &EmitOptions) -> Result<Emitted> {
    let n = plan.jobs.len();
    let exe = std::env::current_exe().map_err(|e| Error::Internal(e.to_string()))?;
    let workdir = std::env::current_dir().map_err(|e| Error::io(Path::new("."), e))?;
    let experiment = absolute(&plan.experiment.file)?;
    let logs = absolute(&plan.experiment.experiment_dir().join("slurm-logs"))?;
    let name = &plan.experiment.name;
    let throttle = if options.parallel > 0 {
        format!("%{}", options.parallel)
    } else {
        String::new()
    };
    let gpu = if plan.experiment.device.is_cuda() {
        "#SBATCH --gres=gpu:1\n"
    } else {
        ""
    };
    // Array tasks log per task (%A_%a); the report job is no array task, so its log is
    // named by its own job id (%j).
    let header = |job: &str, extra: &str| {
        let log = if job == "report" { "%j" } else { "%A_%a" };
        format!(
            "#!/bin/bash\n\
             # Written by `opencarbon emit slurm` for experiment `{name}` ({n} jobs).\n\
             #SBATCH --job-name=oc-{name}-{job}\n\
             #SBATCH --cpus-per-task={cpus}\n\
             {extra}\
             #SBATCH --output={logs}/{job}-{log}.out\n\
             set -euo pipefail\n\
             cd {workdir}\n",
            cpus = options.cpus,
            logs = logs.display(),
            workdir = quote(&workdir),
        )
    };
    let array = format!(
        "{}exec {} run {} --index \"$SLURM_ARRAY_TASK_ID\"\n",
        header(
            "jobs",
            &format!("#SBATCH --array=0-{}{throttle}\n{gpu}", n.saturating_sub(1))
        ),
        quote(&exe),
        quote(&experiment)
    );
    let report = format!(
        "{}exec {} report {}\n",
        header("report", ""),
        quote(&exe),
        quote(&experiment)
    );
    let submit = format!(
        "#!/bin/bash\n\
         # Submit the job array, then the report once every array task has ended (afterany:\n\
         # `report` writes the tables of the finished runs and exits 1 naming the missing ones).\n\
         set -euo pipefail\n\
         cd \"$(dirname \"$0\")\"\n\
         mkdir -p {logs}\n\
         array=$(sbatch --parsable jobs.sbatch)\n\
         sbatch --dependency=afterany:\"${{array%%;*}}\" report.sbatch\n\
         echo \"submitted array $array ({n} jobs) and its report\"\n",
        logs = quote(&logs)
    );
    Ok(Emitted {
        files: vec![
            ("jobs.sbatch".into(), array),
            ("report.sbatch".into(), report),
            ("submit.sh".into(), submit),
        ],
        submit: "bash submit.sh".into(),
    })
}

/// A Kubernetes Indexed Job (one completion per plan job, `JOB_COMPLETION_INDEX` as the job
/// index) and a report Job to apply once it completed. The container image must hold the
/// `opencarbon` binary; the repository (experiments, configs, results) is a shared volume
/// mounted at /work, because every task writes into the same results directory.
pub fn kubernetes(plan: &Plan, options: &EmitOptions, image: &str, claim: &str) -> Result<Emitted> {
    let n = plan.jobs.len();
    let name = plan.experiment.name.to_lowercase().replace('_', "-");
    let experiment = plan.experiment.file.display().to_string();
    if plan.experiment.file.is_absolute() {
        return Err(Error::Usage(format!(
            "{experiment}: give the experiment relative to the repository root, the path the pods see under /work"
        )));
    }
    let gpu = if plan.experiment.device.is_cuda() {
        "\n              nvidia.com/gpu: 1"
    } else {
        ""
    };
    let parallel = if options.parallel > 0 {
        options.parallel
    } else {
        n
    };
    let job = |kind: &str, spec: &str, command: &str| {
        format!(
            "# Written by `opencarbon emit k8s` for experiment `{}` ({n} jobs).\n\
             apiVersion: batch/v1\n\
             kind: Job\n\
             metadata:\n  name: opencarbon-{name}-{kind}\n\
             spec:\n{spec}\
             \x20 template:\n\
             \x20   spec:\n\
             \x20     restartPolicy: Never\n\
             \x20     containers:\n\
             \x20       - name: opencarbon\n\
             \x20         image: {image}\n\
             \x20         workingDir: /work\n\
             \x20         command: [\"sh\", \"-c\", {command:?}]\n\
             \x20         resources:\n\
             \x20           limits:\n\
             \x20             cpu: \"{cpus}\"{gpu}\n\
             \x20         volumeMounts:\n\
             \x20           - name: work\n\
             \x20             mountPath: /work\n\
             \x20     volumes:\n\
             \x20       - name: work\n\
             \x20         persistentVolumeClaim:\n\
             \x20           claimName: {claim}\n",
            plan.experiment.name,
            cpus = options.cpus,
        )
    };
    let jobs = job(
        "jobs",
        &format!(
            "  completionMode: Indexed\n  completions: {n}\n  parallelism: {parallel}\n  backoffLimitPerIndex: 1\n  maxFailedIndexes: {n}\n"
        ),
        &format!("exec opencarbon run {experiment} --index \"$JOB_COMPLETION_INDEX\""),
    );
    let report = job(
        "report",
        "  backoffLimit: 0\n",
        &format!("exec opencarbon report {experiment}"),
    );
    let submit = format!(
        "#!/bin/bash\n\
         # Start the indexed job, wait until every index succeeded, then run the report.\n\
         set -euo pipefail\n\
         cd \"$(dirname \"$0\")\"\n\
         kubectl apply -f jobs.yaml\n\
         kubectl wait --for=condition=complete --timeout=-1s job/opencarbon-{name}-jobs\n\
         kubectl apply -f report.yaml\n"
    );
    Ok(Emitted {
        files: vec![
            ("jobs.yaml".into(), jobs),
            ("report.yaml".into(), report),
            ("submit.sh".into(), submit),
        ],
        submit: "bash submit.sh".into(),
    })
}

/// Write the files into `dir` (created), shell scripts executable.
pub fn write(emitted: &Emitted, dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for (name, text) in &emitted.files {
        let path = dir.join(name);
        crate::track::atomic_write(&path, text.as_bytes())?;
        #[cfg(unix)]
        if name.ends_with(".sh") || name.ends_with(".sbatch") {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .map_err(|e| Error::io(&path, e))?;
        }
        out.push(path);
    }
    Ok(out)
}
