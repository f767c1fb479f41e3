using Qed.Tests.Infrastructure;

namespace Qed.Tests.PowerCut;

/// <summary>
/// Power cuts during the sessions that follow a crash: the need-check repair of a writable open and the requests after
/// it, and <c>qed check -r all</c>. Their inputs are crash states of a first session; every crash state of the second
/// session must keep what the repaired input read (it was on disk) and meet the rules of <see cref="CrashStateVerifier"/>.
/// </summary>
public class ContinuedSessionTests
{
    [Fact]
    public async Task Every_crash_state_of_a_repair_at_open_and_the_requests_after_it_is_consistent()
    {
        const int Inputs = 5, StatesEach = 60;
        var random = new Random(TestSeed.For("PowerCut.repair-at-open"));
        using var dir = new TempDirectory();
        var runs = await ContinuedSessions.RepairAtOpenAsync(() => WorkloadRun.StartAsync(Workloads.EmptyImage4K, dir.Path, random), random, Inputs);

        var tally = CheckContinued("repair-at-open", runs, dir.Path, random, StatesEach);

        Assert.True(tally.Checked >= Inputs * StatesEach, $"{tally}");
        // The inputs cover what the repair must handle: entries past the data, a partial last cluster, trailing leaks it reclaims.
        Assert.Contains(runs, r => r.Input.Corrupt);
        Assert.Contains(runs, r => ContinuedSessions.IsMostTesting(r.Input));
        Assert.Contains(runs, r => r.Session.Log.Any(op => op.Kind == FileOpKind.SetLength));
    }

    [Fact]
    public async Task Every_crash_state_of_check_repair_all_is_consistent()
    {
        const int InputsEach = 5, StatesEach = 40;
        var random = new Random(TestSeed.For("PowerCut.check-repair"));
        using var dir = new TempDirectory();
        var dirty = await WorkloadRun.StartAsync(Workloads.EmptyImage4K, dir.Path, random);
        var leaky = await WorkloadRun.StartAsync(Workloads.Zeroes4KRaw, dir.Path, random);
        var runs = await ContinuedSessions.CheckRepairAsync(dirty, leaky, random, InputsEach);

        var tally = CheckContinued("check-repair", runs, dir.Path, random, StatesEach);

        Assert.Equal(2 * InputsEach, runs.Count);
        // At least: the input, its repaired tables and its cleared bit for a need-check input; the input and its truncated file for a leaking one.
        Assert.True(tally.Checked >= InputsEach * 3 + InputsEach * 2, $"{tally}");
        // The repairs rewrote tables (entries past the data) and truncated leaked clusters, and both were crashed.
        Assert.Contains(runs, r => r.Session.Log.Count(op => op.Kind == FileOpKind.Write && op.Offset != 0) > 0);
        Assert.Contains(runs, r => r.Session.Log.Any(op => op.Kind == FileOpKind.SetLength));
    }

    private static CrashTally CheckContinued(string workload, IReadOnlyList<ContinuedRun> runs, string dir, Random random, int statesEach)
    {
        var total = new CrashTally();
        foreach (var run in runs)
        {
            var recipes = run.Generator.DistinctStates(random, statesEach);
            var tally = CrashStateRunner.CheckAll(run.Label, new CrashStateVerifier(dir, run.Generator, run.Model), recipes, dir);
            Assert.Equal(recipes.Count, tally.Checked);
            TestSeed.Report($"PowerCut {run.Label} (input: {run.Input}): {run.Session.Ops.Count} requests, {run.Session.Log.Count} file operations in {run.Generator.Epochs.Count} epochs, distinct states only: {tally}");
            total.Add(tally);
        }
        TestSeed.Report($"PowerCut {workload}: {runs.Count} sessions; {total}");
        return total;
    }
}
