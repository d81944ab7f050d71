#pragma version ~=0.4.3
"""
@title perpnet test USD: the collateral token
@notice An ERC-20 stablecoin with 6 decimals, like the L2 collateral quantum, so
        amounts map 1:1 between L1 and L2. Anyone may draw from the faucet (this
        is a testnet); the minter may mint any amount.
"""

from ethereum.ercs import IERC20
from ethereum.ercs import IERC20Detailed

implements: IERC20
implements: IERC20Detailed

# One faucet call gives at most a million dollars: enough for any drill.
FAUCET_MAX: public(constant(uint256)) = 10**12

event Transfer:
    sender: indexed(address)
    receiver: indexed(address)
    value: uint256

event Approval:
    owner: indexed(address)
    spender: indexed(address)
    value: uint256

event MinterSet:
    minter: indexed(address)

name: public(String[32])
symbol: public(String[8])
decimals: public(uint8)
totalSupply: public(uint256)
balanceOf: public(HashMap[address, uint256])
allowance: public(HashMap[address, HashMap[address, uint256]])
minter: public(address)


@deploy
def __init__(minter: address):
    self.name = "perpnet test USD"
    self.symbol = "pUSD"
    self.decimals = 6
    self.minter = minter
    log MinterSet(minter=minter)


@internal
def _move(sender: address, receiver: address, amount: uint256):
    assert receiver != empty(address), "transfer to the zero address"
    assert self.balanceOf[sender] >= amount, "balance too low"
    self.balanceOf[sender] -= amount
    self.balanceOf[receiver] += amount
    log Transfer(sender=sender, receiver=receiver, value=amount)


@internal
def _mint(receiver: address, amount: uint256):
    assert receiver != empty(address), "mint to the zero address"
    self.totalSupply += amount
    self.balanceOf[receiver] += amount
    log Transfer(sender=empty(address), receiver=receiver, value=amount)


@external
def transfer(receiver: address, amount: uint256) -> bool:
    self._move(msg.sender, receiver, amount)
    return True


@external
def transferFrom(sender: address, receiver: address, amount: uint256) -> bool:
    allowed: uint256 = self.allowance[sender][msg.sender]
    if allowed != max_value(uint256):
        assert allowed >= amount, "allowance too low"
        self.allowance[sender][msg.sender] = allowed - amount
    self._move(sender, receiver, amount)
    return True


@external
def approve(spender: address, amount: uint256) -> bool:
    self.allowance[msg.sender][spender] = amount
    log Approval(owner=msg.sender, spender=spender, value=amount)
    return True


@external
def faucet(amount: uint256):
    assert amount <= FAUCET_MAX, "faucet gives at most 10**12 quantums a call"
    self._mint(msg.sender, amount)


@external
def mint(receiver: address, amount: uint256):
    assert msg.sender == self.minter, "only the minter mints"
    self._mint(receiver, amount)


@external
def set_minter(minter: address):
    assert msg.sender == self.minter, "only the minter changes the minter"
    self.minter = minter
    log MinterSet(minter=minter)
