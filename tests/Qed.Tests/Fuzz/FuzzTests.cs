using System.Diagnostics;
using System.Runtime.CompilerServices;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Fuzz;

/// <summary>
/// Mutates six real images (made by qemu-img and by us) 100,000 times per run and runs every operation of
/// <see cref="FuzzHarness"/> on each mutant: each must end in success or one of our own errors, within a time and
/// memory bound. The run counts its cases and asserts that all of them ran. Inputs that ever failed live in
/// Regressions/ and are replayed on every run.
/// </summary>
public class FuzzTests
{
    private const int Cases = 100_000;
    private static readonly TimeSpan s_caseLimit = TimeSpan.FromSeconds(5);
    private static readonly TimeSpan s_hangLimit = TimeSpan.FromSeconds(60);
    /// <summary>Bytes one case may allocate on its own thread (the harness runs everything but the copier's read-ahead there).</summary>
    private const long AllocationLimit = 64L << 20;

    [Fact]
    public async Task Mutated_images_end_in_success_or_our_own_errors()
    {
        int runSeed = TestSeed.For(nameof(FuzzTests));
        using var dir = new TempDirectory();
        var seeds = FuzzSeeds.Build(dir);
        string path = dir.File("fuzz.qed");
        long maxAllocated = 0, openedReadOnly = 0, openedWritable = 0, repaired = 0, stillCorrupt = 0;
        ulong digest = 0;

        var result = await FuzzRunner.RunAsync(Cases, runSeed, s_hangLimit, (i, caseSeed, _) =>
        {
            var (name, seed) = seeds[i % seeds.Count];
            byte[] input = Mutator.Mutate(seed, new Random(caseSeed));
            var (outcome, failure) = RunCase(() => FuzzHarness.Run(input, path), AllocationLimit, ref maxAllocated);
            if (failure is not null)
            {
                return $"seed image {name}, saved as Regressions/{FuzzRegressions.Save(input)}: {failure}";
            }
            Interlocked.Add(ref openedReadOnly, outcome.OpenedReadOnly ? 1 : 0);
            Interlocked.Add(ref openedWritable, outcome.OpenedWritable ? 1 : 0);
            Interlocked.Add(ref repaired, outcome.Repair is { CorruptionsFixed: > 0 } or { LeaksFixed: > 0 } ? 1 : 0);
            Interlocked.Add(ref stillCorrupt, outcome.LastCheck is { Corruptions: > 0 } ? 1 : 0);
            AddToDigest(ref digest, i, outcome);
            return null;
        });

        TestSeed.Report(FormattableString.Invariant(
            $"{nameof(FuzzTests)}: {result.Completed} of {result.Requested} mutants handled in {result.Elapsed.TotalSeconds:F1} s on {Environment.ProcessorCount} cores; opened read-only {openedReadOnly}, writable {openedWritable}, repaired {repaired}, corrupt after repair {stillCorrupt}; outcome digest {digest:x16}"));
        TestSeed.Report(FormattableString.Invariant(
            $"{nameof(FuzzTests)}: slowest case {result.SlowestCase} took {result.SlowestTime.TotalMilliseconds:F0} ms (limit {s_caseLimit.TotalSeconds:F0} s); most allocated by one case {maxAllocated >> 10} KiB (limit {AllocationLimit >> 20} MiB)"));
        Assert.True(result.Failures.Count == 0, $"seed {runSeed}, {result.Failures.Count} failing cases:\n" + string.Join("\n\n", result.Failures));
        Assert.Equal(Cases, result.Completed);
    }

    private const int Qcow2Cases = 20_000;

    /// <summary>
    /// Bytes one qcow2 case may allocate: QEMU accepts an active L1 table of up to 32 MiB (QCOW2.md §2.3) whatever the
    /// file's length, and the harness opens each mutant three times.
    /// </summary>
    private const long Qcow2AllocationLimit = 3 * (32L << 20) + (16L << 20);

    /// <summary>
    /// The same for qcow2 (issue 11): eleven qemu-img-made seeds (<see cref="Qcow2FuzzSeeds"/>) mutated by
    /// <see cref="Qcow2Mutator"/>, each run through <see cref="Qcow2FuzzHarness"/> (info, read, convert, check, and a
    /// writable open that must be refused); inputs that ever failed are saved as Regressions/*.qcow2 and replayed.
    /// </summary>
    [Fact]
    public async Task Mutated_qcow2_images_end_in_success_or_our_own_errors()
    {
        int runSeed = TestSeed.For(nameof(Mutated_qcow2_images_end_in_success_or_our_own_errors));
        using var dir = new TempDirectory();
        var seeds = Qcow2FuzzSeeds.Build(dir);
        string path = dir.File("fuzz.qcow2");
        long maxAllocated = 0, opened = 0, checkedClean = 0, checkedCorrupt = 0;
        ulong digest = 0;

        var result = await FuzzRunner.RunAsync(Qcow2Cases, runSeed, s_hangLimit, (i, caseSeed, _) =>
        {
            var (name, seed) = seeds[i % seeds.Count];
            byte[] input = Qcow2Mutator.Mutate(seed, new Random(caseSeed));
            var (outcome, failure) = RunCase(() => Qcow2FuzzHarness.Run(input, path), Qcow2AllocationLimit, ref maxAllocated);
            if (failure is not null)
            {
                return $"seed image {name}, saved as Regressions/{FuzzRegressions.Save(input, ".qcow2")}: {failure}";
            }
            Interlocked.Add(ref opened, outcome.OpenedReadOnly ? 1 : 0);
            Interlocked.Add(ref checkedClean, outcome.LastCheck is { Corruptions: 0, Leaks: 0, CheckErrors: 0 } ? 1 : 0);
            Interlocked.Add(ref checkedCorrupt, outcome.LastCheck is { Corruptions: > 0 } ? 1 : 0);
            AddToDigest(ref digest, i, outcome);
            return null;
        });

        TestSeed.Report(FormattableString.Invariant(
            $"{nameof(Mutated_qcow2_images_end_in_success_or_our_own_errors)}: {result.Completed} of {result.Requested} qcow2 mutants of {seeds.Count} seeds in {result.Elapsed.TotalSeconds:F1} s; read to the end {opened}, checked clean {checkedClean}, with corruptions {checkedCorrupt}; outcome digest {digest:x16}; slowest case {result.SlowestCase} {result.SlowestTime.TotalMilliseconds:F0} ms; most allocated {maxAllocated >> 10} KiB"));
        Assert.True(result.Failures.Count == 0, $"seed {runSeed}, {result.Failures.Count} failing cases:\n" + string.Join("\n\n", result.Failures));
        Assert.Equal(Qcow2Cases, result.Completed);
    }

    public static TheoryData<string> Qcow2Regressions() => RegressionNames(".qcow2");

    [Theory]
    [MemberData(nameof(Qcow2Regressions))]
    public void Qcow2_inputs_that_once_failed_are_handled(string name)
    {
        if (name.Length == 0)
        {
            return;
        }
        using var dir = new TempDirectory();
        Qcow2FuzzSeeds.Build(dir);
        Assert.Null(Qcow2FuzzHarness.Run(FuzzRegressions.Read(name), dir.File("fuzz.qcow2")).Failure);
    }

    public static TheoryData<string> Regressions() => RegressionNames(".qed");

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
        Assert.Null(FuzzHarness.Run(FuzzRegressions.Read(name), dir.File("fuzz.qed")).Failure);
    }

    /// <summary>The saved inputs with <paramref name="extension"/>, or one empty name (a theory needs a row) when there are none.</summary>
    private static TheoryData<string> RegressionNames(string extension)
    {
        var data = new TheoryData<string>();
        foreach (string name in FuzzRegressions.Names(extension))
        {
            data.Add(name);
        }
        if (data.Count == 0)
        {
            data.Add("");
        }
        return data;
    }

    /// <summary>
    /// Runs one mutant, timing it and counting what it allocates on this thread (raising <paramref name="maxAllocated"/>);
    /// the failure is the harness's own, or a case too slow or too greedy, or null.
    /// </summary>
    private static (FuzzOutcome Outcome, string? Failure) RunCase(Func<FuzzOutcome> run, long allocationLimit, ref long maxAllocated)
    {
        long allocated = GC.GetAllocatedBytesForCurrentThread();
        long start = Stopwatch.GetTimestamp();
        var outcome = run();
        var elapsed = Stopwatch.GetElapsedTime(start);
        long bytes = GC.GetAllocatedBytesForCurrentThread() - allocated;
        InterlockedMax(ref maxAllocated, bytes);
        string? failure = outcome.Failure
            ?? (elapsed > s_caseLimit ? $"took {elapsed.TotalSeconds:F1} s" : null)
            ?? (bytes > allocationLimit ? $"allocated {bytes >> 20} MiB" : null);
        return (outcome, failure);
    }

    /// <summary>Adds case <paramref name="index"/>'s fingerprint: a sum does not depend on the order the workers finish in, so equal seeds give equal digests.</summary>
    private static void AddToDigest(ref ulong digest, int index, FuzzOutcome outcome) =>
        Interlocked.Add(ref Unsafe.As<ulong, long>(ref digest), (long)FuzzOutcome.Mix((ulong)index, outcome.Fingerprint));

    private static void InterlockedMax(ref long target, long value)
    {
        long seen;
        while (value > (seen = Volatile.Read(ref target)) && Interlocked.CompareExchange(ref target, value, seen) != seen)
        {
        }
    }
}
