namespace Qed.Tests.Fuzz;

/// <summary>The fuzz runner counts honestly: every case runs once, a throwing case fails with its number, a hang is reported, seeds are fixed.</summary>
public class FuzzRunnerTests
{
    private static readonly TimeSpan s_noHang = TimeSpan.FromMinutes(1);

    [Fact]
    public async Task Runs_every_case_exactly_once()
    {
        int[] runs = new int[1000];
        var result = await FuzzRunner.RunAsync(runs.Length, 7, s_noHang, (i, _, _) =>
        {
            Interlocked.Increment(ref runs[i]);
            return null;
        });
        Assert.Empty(result.Failures);
        Assert.Equal(runs.Length, result.Completed);
        Assert.All(runs, count => Assert.Equal(1, count));
    }

    [Fact]
    public async Task A_throwing_case_fails_the_run_with_its_number_and_is_not_counted()
    {
        var result = await FuzzRunner.RunAsync(500, 7, s_noHang, (i, _, _) =>
            i == 123 ? throw new ArgumentException("offset + length overflows") : null);
        string failure = Assert.Single(result.Failures);
        Assert.StartsWith($"case 123 (case seed {CaseSeed.For(7, 123)}): System.ArgumentException: offset + length overflows", failure);
        Assert.Equal(499, result.Completed);
    }

    [Fact]
    public async Task A_reported_failure_is_not_counted_as_run()
    {
        var result = await FuzzRunner.RunAsync(100, 1, s_noHang, (i, _, _) => i % 50 == 0 ? "wrong" : null);
        Assert.Equal(["case 0", "case 50"], result.Failures.Select(f => f[..f.IndexOf(' ', 5)]).Order());
        Assert.Equal(98, result.Completed);
    }

    [Fact]
    public async Task A_case_that_never_returns_is_reported_as_a_hang()
    {
        using var release = new ManualResetEventSlim();
        try
        {
            var result = await FuzzRunner.RunAsync(10, 1, TimeSpan.FromSeconds(1), (i, _, _) =>
            {
                if (i == 3)
                {
                    release.Wait(TimeSpan.FromMinutes(2));
                }
                return null;
            });
            Assert.Contains(result.Failures, f => f.StartsWith("case 3 ", StringComparison.Ordinal) && f.Contains("hangs", StringComparison.Ordinal));
            Assert.True(result.Completed < 10);
        }
        finally
        {
            release.Set();
        }
    }

    [Fact]
    public void Case_seeds_are_fixed_and_differ_between_neighbours()
    {
        // Fixed values (computed independently from SplitMix64's definition): a seed printed by one run must mean the
        // same cases in every later run, on any machine and any .NET version.
        Assert.Equal(1_101_425_091, CaseSeed.For(12345, 678));
        Assert.Equal(2_065_550_767, CaseSeed.For(0, 0));
        Assert.Equal(1_616_377_404, CaseSeed.For(42, 1));
        Assert.InRange(Enumerable.Range(0, 10_000).Select(i => CaseSeed.For(42, i)).Distinct().Count(), 9_990, 10_000);
        Assert.All(Enumerable.Range(0, 1000), i => Assert.InRange(CaseSeed.For(int.MaxValue, i), 0, int.MaxValue));
    }
}
