using Qed.Format;

namespace Qed.Tests.Format;

public class OffsetRulesTests
{
    private static readonly QedGeometry s_default = QedGeometry.Default;
    private const ulong Header = 0x10000;
    private const ulong FileSize = 0xb0000;

    [Theory]
    [InlineData(0x50000UL, true)]
    [InlineData(0xa0000UL, true)] // last cluster of the file
    [InlineData(0x10000UL, true)] // first cluster after the header (the L1 lives there, but the rule allows it)
    [InlineData(0xb0000UL, false)] // the allocation pointer itself
    [InlineData(0x10000000UL, false)] // beyond the end (F16)
    [InlineData(0xa0200UL, false)] // unaligned (F17)
    [InlineData(0x0UL, false)] // inside the header
    [InlineData(0x1UL, false)] // the zero-cluster marker is not an offset
    [InlineData(ulong.MaxValue, false)]
    public void IsValidCluster(ulong offset, bool expected)
    {
        Assert.Equal(expected, OffsetRules.IsValidCluster(offset, s_default, Header, FileSize));
    }

    [Theory]
    [InlineData(0x10000UL, true)]
    [InlineData(0x70000UL, true)] // last cluster at 0xa0000
    [InlineData(0x80000UL, false)] // last cluster at 0xb0000 = end
    [InlineData(0x0UL, false)]
    [InlineData(0x10200UL, false)]
    [InlineData(0xfffffffffffe0000UL, false)] // tail overflows
    [InlineData(ulong.MaxValue, false)]
    public void IsValidTable(ulong offset, bool expected)
    {
        Assert.Equal(expected, OffsetRules.IsValidTable(offset, s_default, Header, FileSize));
    }

    [Fact]
    public void IsValidTable_WithOneClusterTables_AcceptsEveryValidCluster()
    {
        // QEMU's guard (last cluster strictly after the first) rejects every ts = 1 table; we accept them (§2.3).
        var g = new QedGeometry(4096, 1);
        Assert.True(OffsetRules.IsValidTable(0x1000, g, 0x1000, 0x2000));
        Assert.False(OffsetRules.IsValidTable(0x2000, g, 0x1000, 0x2000));
        Assert.False(OffsetRules.IsValidTable(0x0, g, 0x1000, 0x2000));
        Assert.True(OffsetRules.IsValidTable(0xfffffffffffff000UL, g, 0x1000, ulong.MaxValue));
    }

    [Fact]
    public void HeaderSizeZero_AcceptsClusterZero()
    {
        Assert.True(OffsetRules.IsValidCluster(0, s_default, 0, FileSize));
        Assert.True(OffsetRules.IsValidTable(0, s_default, 0, FileSize));
    }

    [Fact]
    public void LargeHeaderArea_RejectsEverythingInsideIt()
    {
        Assert.False(OffsetRules.IsValidCluster(0x10000, s_default, 0x20000, FileSize));
        Assert.True(OffsetRules.IsValidCluster(0x20000, s_default, 0x20000, FileSize));
        Assert.False(OffsetRules.IsValidTable(0x10000, s_default, 0x20000, FileSize));
    }
}
