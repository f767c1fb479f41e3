using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Security.Cryptography;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Fuzz;

/// <summary>
/// Mutates real images (made by qemu-img and by us) 100,000 times and runs every operation on each mutant: each must
/// end in success or one of our own errors, within a time and memory bound. Inputs that ever failed live in
/// Regressions/ and are replayed on every run.
/// </summary>
public class FuzzTests
{
    private const int Cases = 100_000;
    private static readonly TimeSpan s_caseLimit = TimeSpan.FromSeconds(5);
    private const long AllocationLimit = 256L << 20;

    [Fact]
    public async Task Mutated_images_end_in_success_or_our_own_errors()
    {
        using var dir = new TempDirectory();
        var seeds = FuzzSeeds.Build(dir);
        string path = dir.File("fuzz.qed");
        var failures = new System.Collections.Concurrent.ConcurrentBag<string>();
        long[] current = new long[Environment.ProcessorCount];
        long[] started = new long[Environment.ProcessorCount];
        int nextCase = -1;

        var workers = Enumerable.Range(0, current.Length).Select(worker => Task.Factory.StartNew(() =>
        {
            int i;
            while ((i = Interlocked.Increment(ref nextCase)) < Cases && failures.Count < 5)
            {
                Volatile.Write(ref current[worker], i);
                Volatile.Write(ref started[worker], Stopwatch.GetTimestamp());
                var random = new Random(i);
                var (name, seed) = seeds[i % seeds.Count];
                byte[] input = Mutator.Mutate(seed, random);
                long allocated = GC.GetAllocatedBytesForCurrentThread();
                long start = Stopwatch.GetTimestamp();
                string? failure = FuzzHarness.Run(input, path);
                var elapsed = Stopwatch.GetElapsedTime(start);
                long bytes = GC.GetAllocatedBytesForCurrentThread() - allocated;
                if (failure is null && elapsed > s_caseLimit)
                {
                    failure = $"took {elapsed.TotalSeconds:F1} s";
                }
                if (failure is null && bytes > AllocationLimit)
                {
                    failure = $"allocated {bytes >> 20} MiB";
                }
                if (failure is not null)
                {
                    string saved = SaveRegression(input);
                    failures.Add($"case {i} (seed image {name}, saved as {saved}): {failure}");
                }
            }
            Volatile.Write(ref current[worker], -1);
        }, TaskCreationOptions.LongRunning)).ToArray();

        // A watchdog instead of a timed assertion per case: a case that never returns is a hang.
        var all = Task.WhenAll(workers);
        while (await Task.WhenAny(all, Task.Delay(TimeSpan.FromSeconds(10))) != all)
        {
            for (int w = 0; w < current.Length; w++)
            {
                long i = Volatile.Read(ref current[w]);
                if (i >= 0 && Stopwatch.GetElapsedTime(Volatile.Read(ref started[w])) > TimeSpan.FromSeconds(60))
                {
                    Assert.Fail($"case {i} hangs (more than 60 s)");
                }
            }
        }
        Assert.True(failures.IsEmpty, string.Join("\n\n", failures.Take(5)));
    }

    public static TheoryData<string> Regressions()
    {
        var data = new TheoryData<string>();
        foreach (string file in Directory.EnumerateFiles(RegressionDirectory(), "*.qed").Order())
        {
            data.Add(Path.GetFileName(file));
        }
        if (data.Count == 0)
        {
            data.Add("");
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(Regressions))]
    public void Inputs_that_once_failed_are_handled(string name)
    {
        if (name.Length == 0)
        {
            return;
        }
        using var dir = new TempDirectory();
        FuzzSeeds.Build(dir);
        byte[] input = File.ReadAllBytes(Path.Combine(RegressionDirectory(), name));
        Assert.Null(FuzzHarness.Run(input, dir.File("fuzz.qed")));
    }

    private static string SaveRegression(byte[] input)
    {
        string name = Convert.ToHexStringLower(SHA256.HashData(input))[..16] + ".qed";
        try
        {
            File.WriteAllBytes(Path.Combine(RegressionDirectory(), name), input);
        }
        catch (IOException)
        {
        }
        return name;
    }

    private static string RegressionDirectory([CallerFilePath] string source = "") =>
        Path.Combine(Path.GetDirectoryName(source)!, "Regressions");
}
