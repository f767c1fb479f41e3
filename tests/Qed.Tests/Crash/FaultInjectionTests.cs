using System.Diagnostics;
using Qed.Tests.Crash.Faults;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Crash;

/// <summary>
/// Every write and every flush of an image session fails in turn (and every write is also torn: half written, then
/// failed): during the open (auto-clear rewrite, need-check repair), the requests (allocating and in-place writes, new L2
/// tables, write-zeroes, flushes) and the close (need-check clear). Each case must fire its fault and report it to its
/// caller, and leave the image consistent and readable (see <see cref="FaultSession.RunAsync"/>).
/// </summary>
/// <remarks>
/// An unfaulted run over a counting accessor first learns how many writes and flushes the session makes, so the faulted
/// runs cover exactly that range: no case injects nothing.
/// </remarks>
public class FaultInjectionTests
{
    public static TheoryData<bool, bool> Modes => new()
    {
        // withBacking, useAsync
        { false, false },
        { false, true },
        { true, false },
        { true, true },
    };

    [Theory]
    [MemberData(nameof(Modes))]
    public async Task Every_write_and_flush_of_a_session_fails_in_turn_and_is_reported_and_harmless(bool withBacking, bool useAsync)
    {
        string mode = $"backing={withBacking} async={useAsync}";
        int seed = TestSeed.For($"{nameof(FaultInjectionTests)} {mode}");
        var clock = Stopwatch.StartNew();
        using var dir = new TempDirectory();
        var session = FaultSession.Prepare(dir, withBacking, new Random(seed));

        var census = await session.RunAsync(FaultKind.None, 0, useAsync);
        var phases = Enum.GetValues<SessionPhase>();
        int writes = phases.Sum(census.WritesIn), flushes = phases.Sum(census.FlushesIn);
        foreach (var phase in phases)
        {
            Assert.True(census.FlushesIn(phase) > 0, $"{mode}: the session makes no flush in {phase}");
            // Only the need-check clear writes at close, and only an image without a backing file sets the bit.
            Assert.True(census.WritesIn(phase) > 0 || (phase == SessionPhase.Close && withBacking), $"{mode}: the session makes no write in {phase}");
        }

        var fired = new Dictionary<(FaultKind, SessionPhase), int>();
        int cases = 0;
        foreach (var (kind, count) in new[] { (FaultKind.FailWrite, writes), (FaultKind.TearWrite, writes), (FaultKind.FailFlush, flushes) })
        {
            for (int at = 1; at <= count; at++)
            {
                cases++;
                var faulty = await session.RunAsync(kind, at, useAsync);
                var phase = faulty.FiredIn ?? throw new InvalidOperationException("RunAsync returned without the fault firing");
                fired[(kind, phase)] = fired.GetValueOrDefault((kind, phase)) + 1;
            }
        }

        int firedCases = fired.Values.Sum();
        string byPhase(FaultKind kind) => string.Join(" ", phases.Select(p => $"{p.ToString().ToLowerInvariant()} {fired.GetValueOrDefault((kind, p))}"));
        TestSeed.Report($"{nameof(FaultInjectionTests)} {mode}: session of {writes} writes and {flushes} flushes " +
            $"(open {census.WritesIn(SessionPhase.Open)}/{census.FlushesIn(SessionPhase.Open)}, requests {census.WritesIn(SessionPhase.Work)}/{census.FlushesIn(SessionPhase.Work)}, close {census.WritesIn(SessionPhase.Close)}/{census.FlushesIn(SessionPhase.Close)}); " +
            $"fault cases that fired: {firedCases} of {cases} (failed write: {byPhase(FaultKind.FailWrite)}; torn write: {byPhase(FaultKind.TearWrite)}; failed flush: {byPhase(FaultKind.FailFlush)}) in {clock.Elapsed.TotalSeconds:F1} s");
        Assert.Equal(2 * writes + flushes, cases);
        Assert.Equal(cases, firedCases);
    }
}
