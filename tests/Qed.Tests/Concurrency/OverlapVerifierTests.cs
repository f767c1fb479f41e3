namespace Qed.Tests.Concurrency;

/// <summary>The verifier of the overlapping-write test finds each kind of wrong outcome, and accepts every right one.</summary>
public class OverlapVerifierTests
{
    private const int Size = 4096;

    // A: [100, 1500), B: [1000, 2600). Sequential: A completed (2) before B was issued (3).
    private static readonly TimedWrite s_a = new(1, 100, 1400, 1, 2);
    private static readonly TimedWrite s_b = new(2, 1000, 1600, 3, 4);

    private static byte[] Earlier()
    {
        byte[] earlier = new byte[Size];
        new Random(7).NextBytes(earlier);
        return earlier;
    }

    private static byte[] Apply(byte[] disk, TimedWrite w, long from = -1, long to = -1)
    {
        from = from < 0 ? w.Offset : from;
        to = to < 0 ? w.End : to;
        WritePattern.Fill(w.Id, from, disk.AsSpan((int)from, (int)(to - from)));
        return disk;
    }

    private static OverlapVerifier Verify(byte[] disk, params TimedWrite[] writes)
    {
        var verifier = new OverlapVerifier();
        verifier.Verify(disk, Earlier(), writes);
        return verifier;
    }

    [Fact]
    public void The_later_write_winning_passes()
    {
        var verifier = Verify(Apply(Apply(Earlier(), s_a), s_b), s_a, s_b);
        Assert.Empty(verifier.Errors);
        Assert.True(verifier.OrderedSegments > 0);
        Assert.Equal(0, verifier.RacedSegments);
    }

    [Fact]
    public void An_earlier_completed_write_winning_over_a_later_one_fails()
    {
        var verifier = Verify(Apply(Apply(Earlier(), s_b), s_a), s_a, s_b);
        Assert.Contains(verifier.Errors, e => e.Contains("after that one completed", StringComparison.Ordinal));
    }

    [Fact]
    public void Either_of_two_concurrent_writes_may_win_sector_by_sector()
    {
        var a = s_a with { Completed = 5 };
        // B wins in the sector [1024, 1536), A in the segment [1000, 1024): both ran at once, so both are fine.
        byte[] disk = Apply(Apply(Earlier(), s_b), a, 1000, 1024);
        Apply(disk, a, 100, 1000);
        var verifier = Verify(disk, a, s_b);
        Assert.Empty(verifier.Errors);
        Assert.True(verifier.RacedSegments > 0);
    }

    [Fact]
    public void A_mix_of_two_writes_inside_one_segment_fails()
    {
        var a = s_a with { Completed = 5 };
        byte[] disk = Apply(Apply(Earlier(), a), s_b);
        Apply(disk, a, 1100, 1200); // inside the segment [1024, 1500) that B won
        var verifier = Verify(disk, a, s_b);
        Assert.Contains(verifier.Errors, e => e.Contains("pattern of none", StringComparison.Ordinal));
    }

    [Fact]
    public void A_lost_write_and_a_stray_write_both_fail()
    {
        byte[] disk = Apply(Earlier(), s_a, 100, 1000);
        disk[3000] ^= 1; // covered by no write
        var verifier = Verify(disk, s_a, s_b);
        Assert.Contains(verifier.Errors, e => e.Contains("lost write", StringComparison.Ordinal));
        Assert.Contains(verifier.Errors, e => e.Contains("covered by no write", StringComparison.Ordinal));
    }

    [Fact]
    public void Data_of_the_right_write_at_the_wrong_offset_fails()
    {
        byte[] disk = Earlier();
        WritePattern.Fill(s_a.Id, s_a.Offset + 8, disk.AsSpan((int)s_a.Offset, s_a.Length));
        var verifier = Verify(disk, s_a);
        Assert.NotEmpty(verifier.Errors);
    }

    [Fact]
    public void A_short_segment_is_judged_by_trying_every_covering_write()
    {
        var c = new TimedWrite(3, 1497, 5, 5, 6); // [1497, 1502): shorter than a word, issued after A and B completed
        byte[] disk = Apply(Apply(Apply(Earlier(), s_a), s_b), c);
        Assert.Empty(Verify(disk, s_a, s_b, c).Errors);
        Apply(disk, s_b, 1497, 1500);
        var verifier = Verify(disk, s_a, s_b, c);
        Assert.NotEmpty(verifier.Errors);
        Assert.True(verifier.ShortSegments > 0);
    }
}
