using System.Globalization;
using Qed.CrashWriter;
using Qed.Formats;
using Qed.Image;

// Writer half of the crash tests: runs deterministic plans of writes and flushes on an image and reports progress on
// stdout so that the test, which kills this process with SIGKILL at a random moment, knows what must have survived:
// "S t i" before thread t starts its step i, "F t i" once thread t's flush at step i returned.
// Usage: Qed.CrashWriter IMAGE SEED STEPS [THREADS STRIPE]
//   one thread: the plan of CrashPlan.Generate over the whole disk;
//   THREADS threads: each runs CrashPlan.GenerateStriped in its own stripes, all on one open image, started at
//   once; even threads use the synchronous API, odd ones the asynchronous one.
if (args.Length is not (3 or 5))
{
    Console.Error.WriteLine("usage: Qed.CrashWriter IMAGE SEED STEPS [THREADS STRIPE]");
    return 2;
}
string path = args[0];
int seed = int.Parse(args[1], CultureInfo.InvariantCulture);
int steps = int.Parse(args[2], CultureInfo.InvariantCulture);
int threads = args.Length == 5 ? int.Parse(args[3], CultureInfo.InvariantCulture) : 1;
int stripe = args.Length == 5 ? int.Parse(args[4], CultureInfo.InvariantCulture) : 0;

var stdout = new StreamWriter(Console.OpenStandardOutput()) { AutoFlush = true };
var outputLock = new Lock();
void Report(char kind, int thread, int step)
{
    // The line must be in the pipe before the step starts (S) or right after it is acknowledged (F): written whole, under a lock.
    lock (outputLock)
    {
        stdout.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{kind} {thread} {step}"));
    }
}

using var image = QedImage.Open(path);
IEnumerable<CrashOp> PlanOf(int thread) => threads == 1
    ? CrashPlan.Generate(seed, image.Size, ImageFormats.Qed.Describe(image).ClusterSize ?? 0, steps)
    : CrashPlan.GenerateStriped(seed, thread, threads, stripe, image.Size, steps);

using var start = new Barrier(threads);
var failures = new List<Exception>();
var workers = new Thread[threads];
for (int t = 0; t < threads; t++)
{
    int thread = t;
    workers[t] = new Thread(() =>
    {
        try
        {
            start.SignalAndWait();
            Run(thread, useAsync: thread % 2 == 1).GetAwaiter().GetResult();
        }
        catch (Exception e)
        {
            lock (failures)
            {
                failures.Add(e);
            }
        }
    });
    workers[t].Start();
}
foreach (var worker in workers)
{
    worker.Join();
}
if (failures.Count > 0)
{
    // Any failed step is a bug: the test sees the writer stop by itself and prints this.
    foreach (var failure in failures)
    {
        Console.Error.WriteLine(failure);
    }
    return 1;
}
stdout.WriteLine("DONE");
return 0;

// One loop for both APIs: the synchronous calls complete inline, so the task is already done when it returns.
async Task Run(int thread, bool useAsync)
{
    byte[] buffer = new byte[4 << 20];
    int index = 0;
    foreach (var op in PlanOf(thread))
    {
        Report('S', thread, index);
        switch (op.Kind)
        {
            case CrashOpKind.Flush:
                if (useAsync)
                {
                    await image.FlushAsync().ConfigureAwait(false);
                }
                else
                {
                    image.Flush();
                }
                Report('F', thread, index);
                break;
            case CrashOpKind.WriteZeroes:
                if (useAsync)
                {
                    await image.WriteZeroesAsync(op.Offset, op.Length).ConfigureAwait(false);
                }
                else
                {
                    image.WriteZeroes(op.Offset, op.Length);
                }
                break;
            default:
                op.FillBuffer(buffer.AsSpan(0, op.Length));
                if (useAsync)
                {
                    await image.WriteAsync(buffer.AsMemory(0, op.Length), op.Offset).ConfigureAwait(false);
                }
                else
                {
                    image.Write(buffer.AsMemory(0, op.Length), op.Offset);
                }
                break;
        }
        index++;
    }
}
