// nbhub in JupyterLab: the Slurm job's time left in the status bar, and toasts before the job
// ends. Everything it shows comes from the server extension's GET {base}nbhub/job, which
// asks the hub (the end time follows `scontrol update … TimeLimit=` within one hub poll).
import {
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { Notification } from '@jupyterlab/apputils';
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';
import { IStatusBar } from '@jupyterlab/statusbar';
import { Widget } from '@lumino/widgets';

/** What the server extension answers (times in ms since the epoch). */
interface Job {
  /** When Slurm ends the job; null: not known (yet). */
  end: number | null;
  /** The hub's clock when it answered: the countdown corrects the browser's clock by it. */
  now: number;
  /** When the job's end signal (`--signal=B:USR1@…`) reached the hub; null: not yet. */
  signal: number | null;
  home_url: string;
  /** Toasts this many seconds before the end, largest first. */
  warn_seconds: number[];
  refresh_seconds: number;
}

function clock(ms: number): string {
  const d = new Date(ms);
  const two = (n: number) => String(n).padStart(2, '0');
  return `${two(d.getHours())}:${two(d.getMinutes())}`;
}

function left(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const two = (n: number) => String(n).padStart(2, '0');
  return h > 0 ? `${h}:${two(m)}:${two(s % 60)}` : `${m}:${two(s % 60)}`;
}

function inWords(seconds: number): string {
  return seconds >= 120
    ? `${Math.round(seconds / 60)} minutes`
    : `${Math.max(0, Math.round(seconds))} seconds`;
}

class TimeLeft {
  readonly widget = new Widget({ node: document.createElement('a') });
  private job: Job | null = null;
  /** Hub clock minus browser clock, in ms. */
  private skew = 0;
  /** Thresholds already warned about for the current end time. */
  private warned = new Set<number>();
  private signalShown = false;

  constructor(private settings: ServerConnection.ISettings) {
    const a = this.widget.node as HTMLAnchorElement;
    a.id = 'nbhub-time-left';
    a.target = '_blank';
    a.style.padding = '0 6px';
    a.style.color = 'inherit';
    a.style.textDecoration = 'none';
    this.widget.hide();
  }

  /** How often to ask again, in seconds (the server extension's setting). */
  get refreshSeconds(): number {
    return this.job?.refresh_seconds ?? 30;
  }

  async refresh(): Promise<void> {
    const url = URLExt.join(this.settings.baseUrl, 'nbhub', 'job');
    let job: Job;
    try {
      const reply = await ServerConnection.makeRequest(url, {}, this.settings);
      if (!reply.ok) {
        this.job = null;
        this.widget.hide();
        return;
      }
      job = (await reply.json()) as Job;
    } catch {
      return; // the server is away for a moment: keep counting down
    }
    this.skew = job.now - Date.now();
    if (this.job && job.end !== this.job.end) {
      // The time limit moved (an admin raised or lowered it): warn again for thresholds
      // that lie ahead now.
      const secs = job.end === null ? Infinity : (job.end - job.now) / 1000;
      this.warned = new Set([...this.warned].filter(t => t >= secs));
    }
    if (!this.job) {
      // Opened late: thresholds passed long ago need no toast; the nearest passed one does.
      const secs = job.end === null ? Infinity : (job.end - job.now) / 1000;
      const passed = job.warn_seconds.filter(t => t >= secs).sort((a, b) => a - b);
      passed.slice(1).forEach(t => this.warned.add(t));
    }
    this.job = job;
    this.tick();
  }

  tick(): void {
    const job = this.job;
    const a = this.widget.node as HTMLAnchorElement;
    if (!job || job.end === null) {
      this.widget.hide();
      return;
    }
    const secs = (job.end - (Date.now() + this.skew)) / 1000;
    a.href = job.home_url;
    a.textContent = `Job: ${left(secs)} left`;
    a.title = `Slurm ends this server at ${clock(job.end)}. Click for the hub's home page (relaunch).`;
    this.widget.show();
    for (const t of job.warn_seconds) {
      if (secs <= t && !this.warned.has(t)) {
        this.warned.add(t);
        this.toast(
          `Your job ends in ${inWords(secs)} (at ${clock(job.end)}): save your work.`
        );
      }
    }
    if (job.signal !== null && !this.signalShown) {
      this.signalShown = true;
      this.toast(
        `Slurm will stop this server at ${clock(job.end)}: save your work.`
      );
    }
  }

  private toast(message: string): void {
    const home = this.job?.home_url;
    Notification.warning(message, {
      autoClose: false,
      actions: home
        ? [
            {
              label: 'Hub home (relaunch)',
              callback: () => window.open(home, '_blank')
            }
          ]
        : []
    });
  }
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'nbhub-jupyterlab:plugin',
  description: "The Slurm job's time left and warnings before it ends.",
  autoStart: true,
  optional: [IStatusBar],
  activate: (app: JupyterFrontEnd, statusBar: IStatusBar | null) => {
    const item = new TimeLeft(app.serviceManager.serverSettings);
    if (statusBar) {
      statusBar.registerStatusItem('nbhub-jupyterlab:time-left', {
        item: item.widget,
        align: 'left',
        rank: 1000
      });
    }
    const loop = async () => {
      await item.refresh();
      window.setTimeout(loop, 1000 * Math.max(1, item.refreshSeconds));
    };
    void loop();
    window.setInterval(() => item.tick(), 1000);
  }
};

export default plugin;
