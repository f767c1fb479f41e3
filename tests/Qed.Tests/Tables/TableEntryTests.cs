using Qed.Tables;

namespace Qed.Tests.Tables;

public class TableEntryTests
{
    [Fact]
    public void Entries_AreLittleEndianU64sAtIndexTimes8()
    {
        byte[] table = new byte[32];
        TableEntry.Write(table, 1, 0x0000000000060000);
        TableEntry.Write(table, 3, 0x0807060504030201);
        Assert.Equal(new byte[] { 0, 0, 0, 0, 0, 0, 0, 0, 0x00, 0x00, 0x06, 0x00, 0, 0, 0, 0 }, table[0..16]);
        Assert.Equal(new byte[] { 1, 2, 3, 4, 5, 6, 7, 8 }, table[24..32]);
        Assert.Equal(0x60000UL, TableEntry.Read(table, 1));
        Assert.Equal(0x0807060504030201UL, TableEntry.Read(table, 3));
        Assert.Equal(0UL, TableEntry.Read(table, 2));
    }

    [Fact]
    public void Constants()
    {
        Assert.Equal(0UL, TableEntry.Unallocated);
        Assert.Equal(1UL, TableEntry.Zero);
        Assert.Equal(64, TableEntry.EntriesPerBlock);
    }

    [Fact]
    public void CacheEntry_IndexerReadsTheTable()
    {
        var entry = new L2CacheEntry(0x60000, new byte[64]);
        TableEntry.Write(entry.Table, 7, 0x50000);
        Assert.Equal(0x50000UL, entry[7]);
        Assert.False(entry.Ready.IsCompleted);
        entry.MarkReady();
        Assert.True(entry.Ready.IsCompletedSuccessfully);
    }
}
