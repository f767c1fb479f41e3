using System.Collections.Concurrent;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Fuzz;

/// <summary>
/// Runs the real <c>qed</c> program on 2,000 mutants per run, alone and in backing chains (QED over a mutated QED, QED
/// over raw), through info, check, convert, check -r all and io, and holds every check against qemu-img's
/// (<see cref="CliFuzzHarness"/>, <see cref="QemuCheckRelation"/>). The run counts its cases and asserts all of them ran.
/// </summary>
/// <remarks>Set <c>QED_CLI</c> to the Native AOT build (scripts/test does): the managed fallback starts about 20 times slower.</remarks>
public class CliFuzzTests
{
    private const int Cases = 2_000;
    private static readonly TimeSpan s_hangLimit = CliFuzzHarness.ProcessLimit * 3;

    [Fact]
    public async Task Mutants_through_the_qed_program_end_in_its_exit_statuses_and_agree_with_qemu_img_check()
    {
        int runSeed = TestSeed.For(nameof(CliFuzzTests));
        using var dir = new TempDirectory();
        var seeds = FuzzSeeds.Build(dir);
        var tops = FuzzSeeds.BuildChainTops(dir);
        // The files a mutated backing name may point at; each worker has its own copies and they must never change.
        var shared = new[] { "base.raw", "q-4k.qed", "q-64k.qed" }.Select(name => (name, File.ReadAllBytes(dir.File(name)))).ToArray();
        var harnesses = Enumerable.Range(0, Environment.ProcessorCount)
            .Select(w => new CliFuzzHarness(dir.File($"worker{w}"), seeds, tops, shared)).ToArray();
        var outcomes = new ConcurrentBag<CliCaseOutcome>();

        var result = await FuzzRunner.RunAsync(Cases, runSeed, s_hangLimit, (_, caseSeed, worker) =>
        {
            outcomes.Add(harnesses[worker].Run(caseSeed));
            return null;
        });

        string program = QedProcess.Command.Program;
        TestSeed.Report(FormattableString.Invariant(
            $"{nameof(CliFuzzTests)}: {result.Completed} of {result.Requested} mutants through {Path.GetFileName(program)} in {result.Elapsed.TotalSeconds:F1} s on {Environment.ProcessorCount} cores; slowest case {result.SlowestCase} took {result.SlowestTime.TotalMilliseconds:F0} ms"));
        TestSeed.Report($"{nameof(CliFuzzTests)}: layouts: " + Counts(outcomes.Select(o => o.Layout)));
        TestSeed.Report($"{nameof(CliFuzzTests)}: check -r all exit statuses: " + Counts(outcomes.Select(o => o.Repair.ExitCode.ToString(System.Globalization.CultureInfo.InvariantCulture)))
            + FormattableString.Invariant($"; it fixed corruptions in {outcomes.Count(o => o.Repair.CorruptionsFixed > 0)} and cut leaks off {outcomes.Count(o => o.Repair.LeaksFixed > 0)}; converted {outcomes.Count(o => o.Converted)}"));
        TestSeed.Report($"{nameof(CliFuzzTests)}: against qemu-img check as written: " + Counts(outcomes.Select(o => o.AsWritten.ToString())));
        TestSeed.Report($"{nameof(CliFuzzTests)}: against qemu-img check -r all after ours: " + Counts(outcomes.Select(o => o.AfterRepair.ToString())));
        TestSeed.Report($"{nameof(CliFuzzTests)}: against qemu-img check after io writes: " + Counts(outcomes.Select(o => o.AfterWrites.ToString())));
        Assert.True(result.Failures.Count == 0, $"seed {runSeed}, {result.Failures.Count} failing cases:\n" + string.Join("\n\n", result.Failures));
        Assert.Equal(Cases, result.Completed);
        Assert.Equal(Cases, outcomes.Count);
    }

    private const int Qcow2Cases = 300;

    /// <summary>
    /// qcow2 mutants (issue 11) through the qed program: info, check, map, io, convert and compare
    /// (<see cref="Qcow2CliFuzzHarness"/>); the run counts how often qed's raw disk equals qemu-img's.
    /// </summary>
    [Fact]
    public async Task Qcow2_mutants_through_the_qed_program_end_in_its_exit_statuses()
    {
        int runSeed = TestSeed.For(nameof(Qcow2_mutants_through_the_qed_program_end_in_its_exit_statuses));
        using var dir = new TempDirectory();
        var seeds = Qcow2FuzzSeeds.Build(dir);
        var shared = new[] { Qcow2FuzzSeeds.RawBase, Qcow2FuzzSeeds.Qcow2Base, "c-64k.qcow2" }.Select(name => (name, File.ReadAllBytes(dir.File(name)))).ToArray();
        var harnesses = Enumerable.Range(0, Environment.ProcessorCount)
            .Select(w => new Qcow2CliFuzzHarness(dir.File($"worker{w}"), seeds, shared)).ToArray();
        var outcomes = new ConcurrentBag<Qcow2CliCaseOutcome>();

        var result = await FuzzRunner.RunAsync(Qcow2Cases, runSeed, s_hangLimit, (_, caseSeed, worker) =>
        {
            outcomes.Add(harnesses[worker].Run(caseSeed));
            return null;
        });

        TestSeed.Report(FormattableString.Invariant(
            $"{nameof(Qcow2_mutants_through_the_qed_program_end_in_its_exit_statuses)}: {result.Completed} of {result.Requested} qcow2 mutants in {result.Elapsed.TotalSeconds:F1} s; opened {outcomes.Count(o => o.Opened)}, converted {outcomes.Count(o => o.Converted)}"));
        TestSeed.Report("qcow2 mutants converted by qed, against qemu-img convert: " + Counts(outcomes.Select(o => o.AgainstQemu)));
        Assert.True(result.Failures.Count == 0, $"seed {runSeed}, {result.Failures.Count} failing cases:\n" + string.Join("\n\n", result.Failures));
        Assert.Equal(Qcow2Cases, result.Completed);
        Assert.Equal(Qcow2Cases, outcomes.Count);
    }

    private static string Counts(IEnumerable<string> values) =>
        string.Join(", ", values.GroupBy(v => v).OrderByDescending(g => g.Count()).Select(g => FormattableString.Invariant($"{g.Key} {g.Count()}")));
}
