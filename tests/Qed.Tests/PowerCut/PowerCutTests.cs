using Qed.Tests.Infrastructure;

namespace Qed.Tests.PowerCut;

/// <summary>
/// Power-cut safety: every file a power cut could leave during a recorded session (see <see cref="CrashStateGenerator"/>)
/// opens, passes <c>qemu-img check</c> (corruptions only where the need-check bit makes them legal, none after the repair)
/// and reads back every flushed request exactly and every unfinished one as old or new data, sector by sector
/// (see <see cref="CrashStateVerifier"/>).
/// </summary>
public class PowerCutTests
{
    public static TheoryData<string> SingleSessionWorkloads => new(Workloads.All.Select(w => w.Name));

    [Theory]
    [MemberData(nameof(SingleSessionWorkloads))]
    public async Task Every_crash_state_of_a_session_is_consistent_and_keeps_flushed_data(string workload)
    {
        var spec = Workloads.Get(workload);
        var random = new Random(TestSeed.For($"PowerCut.{workload}"));
        using var dir = new TempDirectory();
        var run = await WorkloadRun.StartAsync(spec, dir.Path, random);
        var recipes = run.Generator.DistinctStates(random, spec.Target);

        var tally = CrashStateRunner.CheckAll(workload, new CrashStateVerifier(dir.Path, run.Generator, run.Model), recipes, dir.Path);

        TestSeed.Report($"PowerCut {workload}: {run.Session.Ops.Count} requests, {run.Session.Log.Count} file operations in {run.Generator.Epochs.Count} epochs, distinct states only: {tally}");
        Assert.Equal(recipes.Count, tally.Checked);
        Assert.True(tally.Checked >= spec.Target, $"{tally}");
        Assert.True(new[] { "prefix", "torn", "one lost", "reordered" }.All(k => tally.ByKind.GetValueOrDefault(k) > 0), $"{tally}");
        Assert.True(tally.ConfirmedByQemu > 0, $"{tally}");
        if (spec.Backing == BackingKind.None)
        {
            // Without a backing file data is not flushed before its L2 entry: some states must have shown it.
            Assert.True(tally.QemuCorrupt > 0 && tally.UnreadableReadOnly > 0 && tally.RefusalsConfirmedByQemu > 0, $"no state with an entry past the data: {tally}");
        }
    }
}
