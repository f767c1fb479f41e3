using System.Collections.Concurrent;
using System.Diagnostics;

namespace Qed.Tests.Fuzz;

/// <summary>What a fuzz run did: how many cases ran to the end, which failed, the slowest one.</summary>
internal sealed record FuzzRunResult(int Requested, int Completed, IReadOnlyList<string> Failures, int SlowestCase, TimeSpan SlowestTime, TimeSpan Elapsed);

/// <summary>
/// Runs numbered fuzz cases on every core and counts them. Each case gets its seed from <see cref="CaseSeed"/>, so
/// the run replays from its seed alone whatever the core count. An exception from a case (harness, mutator, anything)
/// is that case's failure, with its number; a fault of a worker itself is rethrown; a case running longer than the
/// hang limit fails the run.
/// </summary>
internal static class FuzzRunner
{
    /// <summary>Cases run after the first failures are not worth the wait: the run stops taking new ones.</summary>
    private const int MaxFailures = 5;

    private static readonly TimeSpan s_watchInterval = TimeSpan.FromSeconds(2);

    /// <summary>Runs cases 0 .. <paramref name="cases"/>-1; <paramref name="runCase"/> gets (case number, case seed, worker number) and returns null on success, else what went wrong.</summary>
    public static async Task<FuzzRunResult> RunAsync(int cases, int runSeed, TimeSpan hangLimit, Func<int, int, int, string?> runCase)
    {
        int workerCount = Math.Max(1, Environment.ProcessorCount);
        var failures = new ConcurrentQueue<string>();
        long[] current = new long[workerCount];
        long[] started = new long[workerCount];
        long[] slowest = new long[workerCount];
        int[] slowestCase = new int[workerCount];
        int nextCase = -1;
        int completed = 0;
        int stop = 0;
        long runStart = Stopwatch.GetTimestamp();

        var workers = new Task[workerCount];
        for (int w = 0; w < workerCount; w++)
        {
            int worker = w;
            Volatile.Write(ref current[worker], -1);
            workers[w] = Task.Factory.StartNew(() =>
            {
                int i;
                while (Volatile.Read(ref stop) == 0 && (i = Interlocked.Increment(ref nextCase)) < cases)
                {
                    long start = Stopwatch.GetTimestamp();
                    Volatile.Write(ref started[worker], start);
                    Volatile.Write(ref current[worker], i);
                    int seed = CaseSeed.For(runSeed, i);
                    string? failure;
                    try
                    {
                        failure = runCase(i, seed, worker);
                    }
                    catch (Exception e)
                    {
                        failure = e.ToString();
                    }
                    long ticks = Stopwatch.GetTimestamp() - start;
                    Volatile.Write(ref current[worker], -1);
                    if (ticks > slowest[worker])
                    {
                        slowest[worker] = ticks;
                        slowestCase[worker] = i;
                    }
                    if (failure is not null)
                    {
                        failures.Enqueue($"case {i} (case seed {seed}): {failure}");
                        if (failures.Count >= MaxFailures)
                        {
                            Volatile.Write(ref stop, 1);
                        }
                        continue;
                    }
                    Interlocked.Increment(ref completed);
                }
            }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        }

        // The watchdog only looks for hangs; whatever happens, each worker's outcome is observed below.
        var all = Task.WhenAll(workers);
        while (!all.IsCompleted)
        {
            await Task.WhenAny(all, Task.Delay(s_watchInterval)).ConfigureAwait(false);
            for (int w = 0; w < workerCount && !all.IsCompleted; w++)
            {
                long i = Volatile.Read(ref current[w]);
                var running = Stopwatch.GetElapsedTime(Volatile.Read(ref started[w]));
                if (i >= 0 && running > hangLimit && Volatile.Read(ref current[w]) == i)
                {
                    Volatile.Write(ref stop, 1);
                    failures.Enqueue($"case {i} (case seed {CaseSeed.For(runSeed, (int)i)}) hangs: still running after {running.TotalSeconds:F0} s");
                    // The other workers end after their current case; the hung one is abandoned (its thread is a background thread).
                    await Task.WhenAny(all, Task.Delay(hangLimit)).ConfigureAwait(false);
                    foreach (var task in workers.Where(t => t.IsFaulted))
                    {
                        failures.Enqueue($"a fuzz worker failed: {task.Exception}");
                    }
                    return Result();
                }
            }
        }
        await all.ConfigureAwait(false);
        return Result();

        FuzzRunResult Result()
        {
            int slow = 0;
            for (int w = 1; w < workerCount; w++)
            {
                if (slowest[w] > slowest[slow])
                {
                    slow = w;
                }
            }
            return new FuzzRunResult(cases, Volatile.Read(ref completed), failures.ToArray(), slowestCase[slow],
                Stopwatch.GetElapsedTime(0, slowest[slow]), Stopwatch.GetElapsedTime(runStart));
        }
    }
}
